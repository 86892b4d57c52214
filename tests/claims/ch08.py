"""Chapter 8 (dropout on real data): its comparative and quantitative sentences as claims.

Operands are glued per-seed lists (`<name>_v`); `_2x` names are the same quantity after
twice the budget (chapter 8 trains both, so these claims are converged in the book's sense).
"""

from claims import AtLeast, AtMost, Between, Claim, Greater, Monotone, Tie

STEM = "08_dropout_real_data"


def v(name: str) -> str:
    """The glued per-seed list of a chapter quantity."""
    return f"c08_{name}_v"


def twice(cid, text, check, *, budget, seeds=10, costly=False, double=None):
    """A claim at `budget` and its twin at twice the budget (the same check on `_2x` values)."""
    n, unit = budget.split()
    twin_check = double if double is not None else _doubled(check)
    return [Claim(id=cid, text=text, check=check, seeds=seeds, budget=budget,
                  doubled=cid + "-2x", costly=costly),
            Claim(id=cid + "-2x", text=text + f" (at twice the budget, {2 * int(n)} {unit})",
                  check=twin_check, seeds=seeds, budget=f"{2 * int(n)} {unit}", costly=costly)]


def _doubled(check):
    """The same predicate on the `_2x` glued values."""
    from dataclasses import fields, replace

    def x2(name):
        return name[:-2] + "_2x_v" if name.endswith("_v") else name + "_2x"

    def swap(value):
        if isinstance(value, str):
            return x2(value)
        return tuple(map(swap, value)) if isinstance(value, tuple) else value

    return replace(check, **{f.name: swap(getattr(check, f.name)) for f in fields(check)})


CHEAT = "800 steps"

CLAIMS = [
    *twice("ch08.cheat-followed",
           "Trained on cheat images without dropout, the network follows the pixel far more "
           "often than the same network trained on clean images.",
           Greater(v("cheat_none_follows"), v("clean_none_follows")), budget=CHEAT),
    *twice("ch08.cheat-flipped-costs",
           "Its accuracy drops from consistent to flipped images.",
           Greater(v("cheat_none_consistent"), v("cheat_none_flipped")), budget=CHEAT),
    *twice("ch08.cheat-costs-clean",
           "Its clean accuracy is below that of the network trained without the cheat.",
           Greater(v("clean_none_clean"), v("cheat_none_clean")), budget=CHEAT),
    Claim(id="ch08.follow-keeps-rising",
          text="With twice the budget the network without dropout follows the pixel more.",
          check=Greater(v("cheat_none_follows_2x"), v("cheat_none_follows")), seeds=10,
          budget="1600 steps"),
    *twice("ch08.input-general-gain",
           "Trained on clean images, input dropout 0.5 raises clean accuracy: a general gain.",
           Greater(v("gain_clean_input"), 0.0), budget=CHEAT),
    *twice("ch08.input-cheat-gain",
           "Trained on cheat images, input dropout raises clean accuracy too.",
           Greater(v("gain_cheat_input"), 0.0), budget=CHEAT),
    *twice("ch08.input-interaction",
           "Trained on cheat images, input dropout gains more than on clean images: the "
           "difference of the two gains (what it wins back against the cheat) is positive.",
           Greater(v("interaction_input"), 0.0), budget=CHEAT),
    *twice("ch08.input-interaction-share",
           "That difference is about two thirds of input dropout's gain on cheat images.",
           Between("c08_interaction_share_input", 0.55, 0.8), budget=CHEAT),
    *twice("ch08.input-lowers-follow",
           "Input dropout lowers the follow rate.",
           Greater(v("cheat_none_follows"), v("cheat_input_follows")), budget=CHEAT),
    *twice("ch08.input-narrows-gap",
           "Input dropout narrows the gap between consistent and flipped images.",
           Greater(v("cheat_none_gap"), v("cheat_input_gap")), budget=CHEAT),
    *twice("ch08.hidden-raises-follow",
           "Hidden dropout 0.5 raises the follow rate.",
           Greater(v("cheat_hidden_follows"), v("cheat_none_follows")), budget=CHEAT),
    *twice("ch08.hidden-widens-gap",
           "Hidden dropout widens the gap between consistent and flipped images.",
           Greater(v("cheat_hidden_gap"), v("cheat_none_gap")), budget=CHEAT),
    Claim(id="ch08.hidden-early-lower",
          text="Only early in training (the first evaluation of the shorter run) does hidden "
               "dropout hold the follow rate down.",
          check=Greater(v("early_none_follows"), v("early_hidden_follows")), seeds=10,
          budget=CHEAT),
    Claim(id="ch08.hidden-clean-small",
          text="Hidden dropout's effect on clean accuracy, on clean training images, stays within "
               "one percentage point.",
          check=Between("c08_gain_clean_hidden_2x", -0.01, 0.01), seeds=10, budget="1600 steps"),
    Claim(id="ch08.hidden-clean-small-cheat",
          text="Hidden dropout's effect on clean accuracy, on cheat images, stays within one "
               "percentage point.",
          check=Between("c08_gain_cheat_hidden_2x", -0.01, 0.01), seeds=10, budget="1600 steps"),
    *twice("ch08.hidden-interaction-unresolved",
           "The difference of hidden dropout's two gains is not resolved by ten seeds.",
           Tie(v("gain_cheat_hidden"), v("gain_clean_hidden")), budget=CHEAT),
]

CLAIMS += [
    Claim(id="ch08.mc-single-worse",
          text="A single thinned network is a worse classifier than the weight-scaled network.",
          check=Greater(v("mc_scaled"), v("mc_single")), seeds=5, costly=True,
          budget="320 steps"),
    Claim(id="ch08.mc-agreement-grows",
          text="Averaging more thinned networks raises their agreement with the weight-scaled "
               "network.",
          check=Greater(v("mc_agreeK"), v("mc_agree1")), seeds=5, costly=True,
          budget="320 steps"),
    Claim(id="ch08.mc-faithful",
          text="With 16 masks the Monte Carlo ensemble agrees with the weight-scaled network on "
               "at least 97 % of the test images.",
          check=Between("c08_mc_agreeK", 0.97, 1.0), seeds=5, budget="320 steps"),
]

CLAIMS += [
    *twice("ch08.dense-ranking",
           "Without dropout each larger dense network is more accurate than the next smaller "
           "one (the deep one over five seeds).",
           Monotone((v("dense_narrow_plain"), v("dense_wide_plain"), v("dense_deep_plain"))),
           budget="160 steps", seeds=5, costly=True),
    *twice("ch08.dropout-helps-narrow",
           "Dropout raises the narrow network's test accuracy.",
           Greater(v("dense_narrow_gain"), 0.0), budget="400 steps"),
    *twice("ch08.dropout-helps-wide",
           "Dropout raises the wide network's test accuracy.",
           Greater(v("dense_wide_gain"), 0.0), budget="240 steps"),
    Claim(id="ch08.dense-fit",
          text="All three networks without dropout fit their training images by 2B.",
          check=AtLeast("c08_dense_fit_min_2x", 0.99), budget="320 steps"),
    Claim(id="ch08.dropout-helps-deep",
          text="After 320 steps dropout raises the deep network's test accuracy.",
          check=Greater(v("dense_deep_gain_2x"), 0.0), seeds=5, costly=True,
          budget="320 steps"),
    Claim(id="ch08.dropout-deep-unresolved-at-b",
          text="After 160 steps the deep network's gain from dropout is not resolved by five "
               "seeds.",
          check=Tie(v("dense_deep_drop"), v("dense_deep_plain")), seeds=5, costly=True,
          budget="160 steps"),
    Claim(id="ch08.deep-drop-keeps-rising",
          text="Between B and 2B the deep network with dropout gains test accuracy.",
          check=Greater(v("dense_deep_drop_2x"), v("dense_deep_drop")), seeds=5, costly=True,
          budget="320 steps"),
    Claim(id="ch08.wide-drop-keeps-rising",
          text="Between B and 2B the wide network with dropout gains test accuracy.",
          check=Greater(v("dense_wide_drop_2x"), v("dense_wide_drop")), seeds=10,
          budget="480 steps"),
    Claim(id="ch08.dense-ranking-dropout",
          text="With dropout, after 2B steps, each larger network is more accurate than the "
               "next smaller one.",
          check=Monotone((v("dense_narrow_drop_2x"), v("dense_wide_drop_2x"),
                          v("dense_deep_drop_2x"))), seeds=5, costly=True, budget="320 steps"),
]

CNN = "188 steps"  # 12 epochs of 1,000 images; five seeds (a CNN step is costly)
CLAIMS += [
    Claim(id="ch08.optimism-grows-as-m-shrinks",
          text="The winner's optimism grows as the choice is made on fewer validation images "
               "(500, 200, 100, 50).",
          check=Monotone((v("opt_m500"), v("opt_m200"), v("opt_m100"), v("opt_m50"))),
          seeds=5, costly=True, budget=CNN),
    Claim(id="ch08.optimism-grows-with-candidates",
          text="With the choice made on 100 images, the optimism grows with the number of "
               "candidates (1, 2, 3, 6).",
          check=Monotone((v("opt_k1"), v("opt_k2"), v("opt_k3"), v("opt_k6"))), seeds=5,
          costly=True, budget=CNN),
]

CLAIMS += [
    Claim(id="ch08.cnn-light-dropout-helps",
          text="The rate best on validation (p = 0.1) has a higher test accuracy than the CNN "
               "without dropout.",
          check=Greater(v("cnn_best_test"), v("cnn_p0_test")), seeds=5, costly=True,
          budget=CNN),
    Claim(id="ch08.cnn-dropout-narrows-gap",
          text="Dropout 0.3 narrows the gap between training and validation accuracy.",
          check=Greater(v("cnn_p0_gap"), v("cnn_p3_gap")), seeds=5, costly=True, budget=CNN),
    Claim(id="ch08.cnn-heavy-dropout-hurts",
          text="From p = 0.3 on, each larger rate lowers test accuracy.",
          check=Monotone((v("cnn_p3_test"), v("cnn_p5_test"), v("cnn_p7_test"),
                          v("cnn_p9_test")), increasing=False), seeds=5, costly=True,
          budget=CNN),
    Claim(id="ch08.cnn-p9-underfits",
          text="At p = 0.9 the CNN does not fit its training set (training accuracy below 0.9).",
          check=AtMost(v("cnn_p9_train"), 0.9), seeds=5, budget=CNN),
    Claim(id="ch08.cnn-bn-most-accurate",
          text="Batch norm has a higher test accuracy than the best dropout rate.",
          check=Greater(v("cnn_bn_test"), v("cnn_best_test")), seeds=5, costly=True,
          budget=CNN),
    Claim(id="ch08.cnn-bn-fits",
          text="Batch norm fits its training images completely.",
          check=AtLeast(v("cnn_bn_train"), 0.999), seeds=5, budget=CNN),
    Claim(id="ch08.cnn-bn-gap-not-smaller",
          text="Batch norm's gap between training and validation accuracy is no smaller than "
               "without it (not resolved by five seeds).",
          check=Tie(v("cnn_bn_gap"), v("cnn_p0_gap")), seeds=5, costly=True, budget=CNN),
    Claim(id="ch08.cnn-valtest-unresolved",
          text="The validation-test differences of batch norm and of the plain CNN are not "
               "resolved by five seeds.",
          check=Tie(v("cnn_bn_valtest"), v("cnn_p0_valtest")), seeds=5, costly=True,
          budget=CNN),
]
