"""Chapter 7, dropout as Tikhonov regularization: the page's claims, checked on the executed chapter.

Symbolic identities are checked by sympy in the chapter (glued as 0 = "no residual"); closed forms
agree to rounding (relative 1e-10: a few solves of 4 x 4 systems with condition numbers below
1e4); the Monte Carlo run is checked against the exact moments of its SGD iterate (four standard
errors) and the derived tolerance.
"""

from claims import AtMost, Claim, Equal, Greater

STEM = "07_dropout_tikhonov"
ROUNDING = 1e-10

CLAIMS = [
    Claim(id="ch07.step2-degree-one",
          text="After r^2 = r, every mask entry appears at most to the first power.",
          check=Equal("c07_step2_degree", 1)),
    Claim(id="ch07.step4-identity",
          text="Sympy: the expectation of the squared error equals the claimed dropout objective (difference 0).",
          check=Equal("c07_step4_nonzero", 0)),
    Claim(id="ch07.enumeration-matches",
          text="Enumerating all 2^6 keep matrices gives the closed form's numbers.",
          check=AtMost("c07_enum_err", ROUNDING)),
    Claim(id="ch07.substitution-identity",
          text="Sympy: substituting w = (1 - p) w-check turns the dropout objective into Tikhonov's.",
          check=Equal("c07_subst_nonzero", 0)),
    Claim(id="ch07.rescaled-is-tikhonov",
          text="(1 - p) times the dropout solution equals the Tikhonov solution to rounding.",
          check=AtMost("c07_rescaled_vs_tik", ROUNDING)),
    Claim(id="ch07.inverted-is-tikhonov",
          text="Inverted dropout's minimizer equals the Tikhonov solution to rounding.",
          check=AtMost("c07_inverted_vs_tik", ROUNDING)),
    Claim(id="ch07.minimizer-without-rescaling",
          text="The chapter-6 minimizer for dropout without rescaling equals this chapter's dropout solution.",
          check=AtMost("c07_minimizer_vs_check", ROUNDING)),
    Claim(id="ch07.two-weight-case",
          text="The two-weight model of chapter 6 is the case n = 1 of the Tikhonov solution.",
          check=AtMost("c07_two_weight_gap", ROUNDING)),
    Claim(id="ch07.columns-differ",
          text="The column norms of the random data differ by more than a factor 10.",
          check=Greater("c07_norm_ratio", 10.0, z=0), values=("c07_lambda", "c07_rate")),
    Claim(id="ch07.unit-columns-symbolic",
          text="Sympy: every column of X Gamma-check^-1 has norm 1.",
          check=Equal("c07_unit_columns_nonzero", 0)),
    Claim(id="ch07.unit-columns",
          text="After the change of variables all column norms of the random data are 1.",
          check=AtMost("c07_unit_columns_err", ROUNDING)),
    Claim(id="ch07.back-transformed",
          text="The back-transformed ridge solution equals the Tikhonov solution.",
          check=AtMost("c07_back_transformed_gap", ROUNDING)),
    Claim(id="ch07.dropout-ignores-units",
          text="Rescaling the features leaves the dropout predictions unchanged to rounding.",
          check=AtMost("c07_drop_change", ROUNDING)),
    Claim(id="ch07.ridge-depends-on-units",
          text="Rescaling the features moves ridge's predictions (lambda = 1), and dropout's not.",
          check=Greater("c07_ridge_change", "c07_drop_change", z=0)),
    Claim(id="ch07.normalized-ridge-is-dropout",
          text="Ridge with lambda n on features divided by their RMS gives exactly the dropout solution.",
          check=AtMost("c07_normalized_ridge_gap", ROUNDING)),
    Claim(id="ch07.mean-within-bias",
          text="The exact mean of the SGD iterate is within rho^T ||w-check*|| of the closed form.",
          check=AtMost("c07_mean_bias", "c07_bias_rounded"), values=("c07_bias", "c07_steps", "c07_kappa")),
    Claim(id="ch07.runs-match-moments",
          text="The mean of the 200 copies lies within four standard errors of the exact mean.",
          check=AtMost("c07_mc_z", 4.0), seeds=200, values=("c07_replicas",)),
    Claim(id="ch07.rescaled-within-tolerance",
          text="Multiplied by the keep probability, the mean dropout weights are within the derived "
               "tolerance of the Tikhonov closed form.",
          check=AtMost("c07_err_rescaled", "c07_rel_tol"), seeds=200),
    Claim(id="ch07.raw-is-off",
          text="Without rescaling the mean dropout weights are off by more than ten times the tolerance.",
          check=Greater("c07_err_raw", "c07_rel_tol_10", z=0), seeds=200),
    Claim(id="ch07.least-squares-is-off",
          text="The unregularized least-squares solution is more than ten times the tolerance away.",
          check=Greater("c07_err_ols", "c07_rel_tol_10", z=0)),
]
