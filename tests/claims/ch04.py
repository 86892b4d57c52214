"""Chapter 4's page claims: the drop at the first decay, the second decay, reduce-on-plateau against
fixed milestones, and early stopping under label noise."""

from claims import AtLeast, AtMost, Claim, Equal, Greater, Less, Tie

STEM = "04_schedules_early_stopping"
CLAIMS = [
    Claim(id="ch04.first-decay-drops",
          text="Around the first decay (step 300) the training error falls by more than in the "
               "constant-rate runs over the same window.",
          check=Greater("c04_seed_drop1", 0.0), seeds=10, budget="900 steps",
          values=("c04_before1", "c04_after1", "c04_const_change1", "c04_drop1", "c04_drop1_se")),
    Claim(id="ch04.first-decay-drops-validation",
          text="The validation error falls around the first decay.",
          check=Greater("c04_seed_vdrop1", 0.0), seeds=10, budget="900 steps",
          values=("c04_vbefore1", "c04_vafter1")),
    Claim(id="ch04.second-decay-no-drop",
          text="Around the second decay (step 600) the training error changes by less than half a "
               "percentage point in every seed.",
          check=AtMost("c04_seed_drop2_abs", 0.005), seeds=10, budget="900 steps",
          values=("c04_drop2", "c04_drop2_sd")),
    Claim(id="ch04.second-decay-costs",
          text="After 900 steps, the runs that keep eta = 0.03 after step 600 end below the runs "
               "with the second decay.",
          check=Less("c04_seed_fin_once", "c04_seed_fin_step"), seeds=10, budget="900 steps",
          values=("c04_second_cost", "c04_second_cost_se")),
    Claim(id="ch04.plateau-first-cut-early",
          text="Every plateau run makes its first cut before the fixed milestone at step 300.",
          check=AtMost("c04_pl_first_max", 299), seeds=10, values=("c04_pl_first_min",)),
    Claim(id="ch04.plateau-two-cuts",
          text="With the minimum rate 0.003, every plateau run makes exactly two cuts and ends at it.",
          check=Equal("c04_pl_cuts_min", 2), seeds=10,
          values=("c04_pl_cuts_max", "c04_pl_lr_end", "c04_pl_second_min", "c04_pl_second_max")),
    Claim(id="ch04.plateau-first-cut-drops",
          text="At the plateau rule's first cut the training error drops.",
          check=Greater("c04_seed_pl_drop", 0.0), seeds=10, budget="900 steps",
          values=("c04_pl_before", "c04_pl_after", "c04_pl_drop", "c04_pl_drop_se")),
    Claim(id="ch04.plateau-not-better-train",
          text="After 900 steps the plateau runs end with a higher training error than the fixed "
               "cuts at 300 and 600.",
          check=Greater("c04_seed_pl_fin", "c04_seed_fin_step"), seeds=10, budget="900 steps",
          values=("c04_pl_fin", "c04_pl_vs_step_fin", "c04_pl_vs_step_fin_se")),
    Claim(id="ch04.plateau-not-better-validation",
          text="After 900 steps the plateau runs' validation error is not resolved from the fixed "
               "cuts' (within two standard errors).",
          check=Tie("c04_seed_pl_vfin", "c04_seed_vfin_step"), seeds=10, budget="900 steps",
          values=("c04_pl_vfin", "c04_vfin_step", "c04_pl_vs_step_vfin", "c04_pl_vs_step_vfin_se")),
    Claim(id="ch04.noisy-labels-memorized",
          text="Trained on 40 % wrong labels, the network ends below 20 % training error against "
               "them: it memorizes most of the wrong labels.",
          check=AtMost("c04_seed_es_train_end", 0.2), seeds=10, budget="1000 steps",
          values=("c04_es_train_start", "c04_es_train_end")),
    Claim(id="ch04.validation-error-rises",
          text="The validation error ends above its minimum.",
          check=Greater("c04_seed_es_val_end", "c04_seed_es_val_min"), seeds=10, budget="1000 steps",
          values=("c04_es_rise", "c04_es_rise_se", "c04_es_best_min", "c04_es_best_max")),
    Claim(id="ch04.restored-is-best",
          text="The restored weights have exactly the best recorded validation loss.",
          check=AtMost("c04_es_restore_err", 1e-6), seeds=10),
    Claim(id="ch04.stops-100-after-best",
          text="Every run stops 100 steps (five evaluations) after its best evaluation.",
          check=Equal("c04_es_stop_gap", 100), seeds=10, values=("c04_es_stop_mean",)),
    Claim(id="ch04.early-stopping-gains",
          text="On clean test labels the early-stopped networks are more accurate than the networks "
               "trained for the whole budget.",
          check=Greater("c04_seed_es_acc", "c04_seed_final_acc"), seeds=10, budget="1000 steps",
          values=("c04_es_acc", "c04_final_acc", "c04_es_gain", "c04_es_gain_se")),
]
