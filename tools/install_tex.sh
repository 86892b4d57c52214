#!/usr/bin/env bash
# Install the TeX toolchain for the book's PDF (`make pdf`, tests/test_pdf.py) when it is missing:
# XeLaTeX, latexmk, the LaTeX packages Sphinx's LaTeX writer and sphinx-jupyterbook-latex load, the
# FreeFont OpenType fonts Sphinx sets for XeLaTeX, DejaVu Sans Mono for code, and poppler-utils (pdftotext, pdfinfo, pdfimages,
# pdftoppm) for the tests. Only Debian packages, no TeX Live network installer. Needs root (or sudo).
set -euo pipefail
need="xelatex latexmk kpsewhich pdftotext pdfinfo pdfimages pdftoppm"
missing=0
for c in $need; do command -v "$c" >/dev/null 2>&1 || missing=1; done
# fncychap, tabulary, needspace, fvextra, ... come with texlive-latex-extra
if [ "$missing" = 0 ] && kpsewhich fncychap.sty fvextra.sty >/dev/null 2>&1 \
   && fc-list 2>/dev/null | grep -q FreeSerif && fc-list 2>/dev/null | grep -q "DejaVu Sans Mono"; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install_tex.sh: need root or sudo to apt-get install texlive-xetex latexmk" >&2; exit 1; }
    SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    texlive-xetex texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended \
    texlive-plain-generic latexmk fonts-freefont-otf fonts-dejavu-core fontconfig poppler-utils >/dev/null
for c in $need; do command -v "$c" >/dev/null || { echo "install_tex.sh: $c still missing" >&2; exit 1; }; done
