# Colab/Binder bootstrap: installs the book's library when it is missing (a no-op locally).
import importlib.util, subprocess, sys
BOOK_REPO, BOOK_BRANCH = "https://github.com/dlbook-org/deep-training-book", "main"
if importlib.util.find_spec("dlbook") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet",
                           f"dlbook @ git+{BOOK_REPO}@{BOOK_BRANCH}"])
