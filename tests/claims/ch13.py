"""Chapter 13 (memorization and flat minima): the page's claims, checked on the executed chapter."""

import math

from claims import AtLeast, AtMost, Between, Claim, Close, Equal, Greater, Monotone, Tie

STEM = "13_memorization"
MLP = dict(seeds=10, budget="700 steps")
CNN = dict(seeds=5, budget="400 steps", costly=True)
CHANCE_TOL = 3 * math.sqrt(0.1 * 0.9 / 500)  # three binomial sd of one network on 500 digits


def _s(name):
    return name + "_seeds"


CLAIMS = [
    # random labels
    Claim(id="ch13.shuffled-fitted", text="With shuffled labels the MLP reaches training accuracy 1.",
          check=AtLeast(_s("c13_shuf_train"), 1.0), **MLP),
    Claim(id="ch13.shuffled-at-chance",
          text="Its validation accuracy stays at chance: the mean within three binomial sd of 0.1.",
          check=Close(_s("c13_shuf_val"), 0.1, CHANCE_TOL), values=("c13_shuf_val_max", "c13_chance_sd"), **MLP),
    Claim(id="ch13.real-generalizes",
          text="On real labels the same network also fits every training digit and generalizes far better.",
          check=Greater(_s("c13_real_val"), _s("c13_shuf_val")), values=(_s("c13_real_train"),), **MLP),
    Claim(id="ch13.shuffled-slower",
          text="Memorizing shuffled labels takes several times as many steps as fitting real ones "
               "(evaluated every 5 steps, paired by seed).",
          check=Greater(_s("c13_steps_shuf"), _s("c13_steps_real")), values=("c13_steps_ratio", "c13_steps_z"), **MLP),
    # label corruption and its control
    Claim(id="ch13.corrupted-fitted", text="Every network fits its training labels, the corrupted ones included.",
          check=AtLeast("c13_train_corrupted_seeds", 1.0), **MLP),
    Claim(id="ch13.corruption-monotone",
          text="Validation accuracy falls with the fraction shuffled, each step larger than its spread.",
          check=Monotone(tuple(_s(f"c13_val_frac{p}") for p in (0, 25, 50, 75, 100)), increasing=False), **MLP),
    *[Claim(id=f"ch13.clean-beats-corrupted-{p}",
            text=f"Trained on the clean rows alone ({p} % shuffled), the network loses far less than with "
                 "the corrupted labels.",
            check=Greater(_s(f"c13_clean{p}_val"), _s(f"c13_val_frac{p}")), **MLP) for p in (50, 75)],
    Claim(id="ch13.fewer-labels-cost-something",
          text="Fewer real labels cost something: the clean-rows control at 75 % is below the full real-label run.",
          check=Greater(_s("c13_val_frac0"), _s("c13_clean75_val")), **MLP),
    Claim(id="ch13.wrong-labels-cost-most",
          text="The wrong labels account for most (more than half) of the accuracy lost, at every fraction.",
          check=AtLeast("c13_wrong_shares_seeds", 0.5),
          values=tuple(_s(f"c13_wrong_share{p}") for p in (50, 75)), **MLP),
    # the CNN (five seeds: costly)
    Claim(id="ch13.cnn-memorizes", text="The CNN memorizes the shuffled labels (training accuracy at least 0.99).",
          check=AtLeast(_s("c13_cnn_shuf_train"), 0.99), **CNN),
    Claim(id="ch13.cnn-shuffled-at-chance", text="Its validation accuracy on shuffled labels is at chance.",
          check=Close(_s("c13_cnn_shuf_val"), 0.1, CHANCE_TOL), **CNN),
    Claim(id="ch13.cnn-shuffled-slower", text="The CNN takes longer to fit shuffled labels than real ones.",
          check=Greater(_s("c13_cnn_shuf_steps"), _s("c13_cnn_real_steps")), **CNN),
    Claim(id="ch13.cnn-pixels-cost-accuracy",
          text="With shuffled pixels the CNN generalizes less well than on intact images (five seeds).",
          check=Greater(_s("c13_cnn_real_val"), _s("c13_cnn_pix_val")), values=(_s("c13_cnn_pix_train"),), **CNN),
    # the 2n + d construction
    Claim(id="ch13.interpolation-weights", text="The construction has exactly 2n + d weights.",
          check=Equal("c13_weights", "c13_two_n_d"), values=("c13_weights_ratio",)),
    Claim(id="ch13.interpolation-exact", text="It fits all 500 shuffled labels up to floating-point rounding.",
          check=AtMost("c13_fit_err", 1e-6)),
    Claim(id="ch13.interpolation-outputs-not-classes",
          text="On validation digits most of its outputs do not round to a class 0-9 (below chance for that reason).",
          check=AtMost("c13_interp_class_share", 0.5), values=("c13_interp_test", "c13_interp_median_abs",
                                                                 "c13_interp_class_n")),
    Claim(id="ch13.interpolation-in-range-at-chance",
          text="Among outputs that do name a class, accuracy is chance within its binomial error.",
          check=Between("c13_interp_acc_in_range_z", -3.0, 3.0), values=("c13_interp_acc_in_range",)),
    # the line from initial to final weights
    Claim(id="ch13.line-val-loss-dip",
          text="For real labels the validation loss along the line has a minimum below its end value.",
          check=Greater(_s("c13_line_real_val_end"), _s("c13_line_real_val_min")), **MLP),
    Claim(id="ch13.line-shuffled-val-higher",
          text="For shuffled labels the validation loss only rises, ending far above the real-label one.",
          check=Greater(_s("c13_line_shuf_val_end"), _s("c13_line_real_val_end")), values=(_s("c13_line_start"),),
          **MLP),
    Claim(id="ch13.line-error-does-not-rise",
          text="The validation error at the end of the line and at the loss minimum are not resolved apart "
               "(ten seeds): the loss rise after the minimum is over-confidence, not more errors.",
          check=Tie(_s("c13_line_err_end"), _s("c13_line_err_at_min")), **MLP),
]

# sharpness: the Hessian estimators on a tiny MLP against its full Hessian
CLAIMS += [
    Claim(id="ch13.tiny-params", text="The tiny MLP (16 inputs, 8 hidden units) has 16*8 + 8 + 8*10 + 10 parameters.",
          check=Equal("c13_tiny_params", 16 * 8 + 8 + 8 * 10 + 10)),
    Claim(id="ch13.power-matches-full-hessian",
          text="Power iteration gives the full Hessian's largest eigenvalue (relative difference below 1e-3).",
          check=Close("c13_tiny_power", "c13_tiny_full", 1e-3, rel=True), values=("c13_tiny_relerr",)),
    Claim(id="ch13.hutchinson-matches-trace",
          text="200 Hutchinson probes give the full Hessian's trace within four of their standard errors.",
          check=Between("c13_tiny_hutchinson_z", -4.0, 4.0),
          values=("c13_tiny_trace", "c13_tiny_hutchinson", "c13_tiny_hutchinson_se")),
]

# sharpness of the trained MLPs, at the end of training and at matched training loss (10 seeds)
_shuf_larger = [("end-eig", "end_eig"), ("end-rel-rise", "end_rel"),
                ("end-abs-rise", "end_abs"), ("end-tensor-rise", "end_tensor"),
                ("matched-tensor-rise", "mat_tensor"), ("matched-rel-rise", "mat_rel"),
                ("matched-abs-rise", "mat_abs"), ("matched-trace", "mat_trace"),
                ("eig-flips-under-rescaling", "mat_eig_quarter"), ("eig-flips-when-balanced", "mat_eig_bal"),
                ("tensor-rise-small-radius", "mat_tensor_small"), ("abs-rise-small-radius", "mat_abs_small")]
_ids = {"eig-flips-under-rescaling": "eig-flips-under-rescaling", "eig-flips-when-balanced": "eig-flips-when-balanced",
        "tensor-rise-small-radius": "tensor-rise-small-radius", "abs-rise-small-radius": "abs-rise-small-radius"}
CLAIMS += [
    Claim(id="ch13." + _ids.get(cid, cid + "-shuffled-larger"),
          text=f"Shuffled-label networks are sharper than real-label ones by this measure ({g}).",
          check=Greater(_s(f"c13_{g}_shuf"), _s(f"c13_{g}_real"), paired=False), **MLP)
    for cid, g in _shuf_larger
] + [
    Claim(id="ch13.end-loss-higher", text="At the end of training the shuffled-label loss is many times higher.",
          check=Greater(_s("c13_end_loss_shuf"), _s("c13_end_loss_real"), paired=False),
          values=("c13_end_loss_ratio",), **MLP),
    Claim(id="ch13.matched-loss-close", text="At matched loss every network's training loss is at most 0.05.",
          check=AtMost("c13_mat_loss_both_seeds", 0.05), **MLP),
    Claim(id="ch13.matched-eig-real-larger",
          text="At matched loss this MLP, as trained, has the larger top eigenvalue on real labels.",
          check=Greater(_s("c13_mat_eig_real"), _s("c13_mat_eig_shuf"), paired=False), **MLP),
    Claim(id="ch13.rise-beyond-quadratic",
          text="Measured against its second-order prediction r^2 tr(H)/(2P), the shuffled rise exceeds it by more "
               "than the real one does.",
          check=Greater(_s("c13_mat_quad_ratio_shuf"), _s("c13_mat_quad_ratio_real"), paired=False),
          values=("c13_mat_trace_ratio", "c13_mat_abs_ratio"), **MLP),
    Claim(id="ch13.trace-explains-little-of-the-rise",
          text="Of the difference between the two absolute rises, less than half is what the traces predict.",
          check=AtMost("c13_mat_quad_share", 0.5), values=("c13_mat_trace_z",), **MLP),
    Claim(id="ch13.excess-persists-at-small-radius",
          text="At r = 1 the shuffled rise still exceeds its second-order prediction by more than the real one.",
          check=Greater(_s("c13_mat_quad1_ratio_shuf"), _s("c13_mat_quad1_ratio_real"), paired=False), **MLP),
    # the reparametrization example: one network, exact
    Claim(id="ch13.rescaling-keeps-the-function",
          text="Rescaling by a power of two leaves every output exactly unchanged.",
          check=AtMost("c13_repar_change", 1e-6)),
    Claim(id="ch13.rescaling-moves-the-eigenvalue",
          text="The same function's top eigenvalue moves by a large factor with c in {1/4, 1, 4}, at most "
               "c^4 = 256 (each block's curvature scales by at most max(c, 1/c)^2).",
          check=Between("c13_repar_ratio", 2.0, 256.0)),
]

# explicit regularization (ten seeds each, 700 steps)
CLAIMS += [
    Claim(id="ch13.dropout-still-memorizes", text="With dropout the MLP still fits most shuffled labels.",
          check=AtLeast(_s("c13_reg_drop_shuf_train"), 0.5), **MLP),
    Claim(id="ch13.decay-still-memorizes", text="With strong decoupled weight decay it still fits most shuffled labels.",
          check=AtLeast(_s("c13_reg_wd_shuf_train"), 0.5), values=("c13_wd", "c13_wd_shrink"), **MLP),
    Claim(id="ch13.decay-slows-memorization", text="Weight decay slows the fit of shuffled labels below 100 %.",
          check=Greater(_s("c13_reg_none_shuf_train"), _s("c13_reg_wd_shuf_train")), **MLP),
    Claim(id="ch13.dropout-raises-real-accuracy", text="Dropout raises real-label validation accuracy (paired by seed).",
          check=Greater(_s("c13_reg_drop_real_val"), _s("c13_reg_none_real_val")),
          values=("c13_drop_gain", "c13_drop_gain_se"), **MLP),
    Claim(id="ch13.decay-raises-real-accuracy",
          text="Decoupled weight decay raises real-label validation accuracy (paired by seed).",
          check=Greater(_s("c13_reg_wd_real_val"), _s("c13_reg_none_real_val")),
          values=("c13_wd_gain", "c13_wd_gain_se"), **MLP),
    Claim(id="ch13.regularizer-effects-small",
          text="Both effects on real labels are small next to the real-vs-shuffled gap (under a tenth of it).",
          check=AtMost("c13_reg_effect_share", 0.1), values=("c13_label_gap",), **MLP),
]
