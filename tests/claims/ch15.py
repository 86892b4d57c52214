"""Chapter 15's page claims: exact memory accounting (against counts made without the library) and
the batch-size runs (accuracy on the test split, CPU time)."""

from claims import Cited, Claim, Equal, Greater, Tie

STEM = "15_memory"

# Element sizes by definition of the formats, independent of the library under test
F32, I64 = 4, 8

CLAIMS = [
    Claim(id="ch15.params-four-bytes",
          text="ResNet-152's parameters take 4 bytes each (float32).",
          check=Equal("c15_p152_bytes", "c15_n152_4bytes")),
    Claim(id="ch15.bn-constant",
          text="The part of the saved activations that does not grow with the batch is 8 bytes "
               "per normalized channel (batch mean and inverse sd) plus the loss's 4-byte scalar.",
          check=Equal("c15_c152", "c15_c152_count"), values=("c15_bn152", "c15_c152_kib")),
    Claim(id="ch15.bn-buffers",
          text="BatchNorm's buffers are a float32 running mean and variance per channel and one "
               "int64 counter per layer.",
          check=Equal("c15_buf152", "c15_buf152_count"), values=("c15_buf152_kib",)),
    Claim(id="ch15.activations-dominate-from-16",
          text="From batch 16 on, ResNet-152's activations exceed the fixed terms with Adam.",
          check=Greater("c15_act152_16", "c15_fixed152_adam", z=0)),
    Claim(id="ch15.fit-adam-below-sgd",
          text="On 16 GiB, SGD fits a larger ResNet-152 batch than Adam, but only slightly.",
          check=Greater("c15_fit152_sgd_16", "c15_fit152_adam_16", z=0),
          values=("c15_fit152_adam_80",)),
    Claim(id="ch15.resnet18-fits-more",
          text="ResNet-18 fits a larger batch than ResNet-152 in 16 GiB.",
          check=Greater("c15_fit18_adam_16", "c15_fit152_adam_16", z=0),
          values=("c15_k18_mib", "c15_n18")),
    Claim(id="ch15.checkpoint-saves",
          text="Checkpointing every block lowers ResNet-152's saved activations at batch 64.",
          check=Greater("c15_act152_64", "c15_act_ckpt", z=0), values=("c15_ckpt_ratio",)),
    Claim(id="ch15.checkpoint-costs-time",
          text="Checkpointing makes a ResNet-18 step slower on this CPU (one measurement).",
          check=Greater("c15_time_ratio", 1.0, z=0), values=("c15_fwd_share",)),
    Claim(id="ch15.bf16-above-half",
          text="bf16 activations are more than half the float32 ones: int64 indices and float32 "
               "batch statistics do not halve.",
          check=Greater("c15_act_bf16", "c15_half_act152_64", z=0), values=("c15_bf16_ratio",)),
    Claim(id="ch15.epoch-time-falls",
          text="The CPU time per epoch falls from batch 16 to batch 1024 (ten seeds, paired).",
          check=Greater("c15_epoch16_seeds", "c15_epoch1024_seeds"), seeds=10,
          values=("c15_speedup", "c15_time_z")),
    Claim(id="ch15.b256-unresolved-from-b16",
          text="After 10 epochs B = 256 ends slightly below B = 16 in test accuracy, a "
               "difference ten seeds do not resolve.",
          check=Tie("c15_bs16_acc_seeds", "c15_bs256_acc_seeds"), seeds=10,
          budget="10 epochs", values=("c15_acc_drop_256", "c15_acc_z_256")),
    Claim(id="ch15.b1024-below-b16",
          text="After 10 epochs B = 1024 has a lower test accuracy than B = 16.",
          check=Greater("c15_bs16_acc_seeds", "c15_bs1024_acc_seeds"), seeds=10,
          budget="10 epochs", values=("c15_acc_drop_1024", "c15_acc_z")),
    Claim(id="ch15.b16-still-learning",
          text="At B = 16 the training accuracy is still rising in the last epoch.",
          check=Greater("c15_train16_last", "c15_train16_before"), seeds=10, budget="10 epochs"),
    Claim(id="ch15.b256-reaches-first",
          text="In this build's timings B = 256 reaches the target accuracy before B = 16.",
          check=Greater("c15_bs16_reach_s", "c15_bs256_reach_s", z=0), budget="10 epochs"),
    Claim(id="ch15.b256-before-b1024",
          text="In this build's timings B = 256 reaches the target accuracy before B = 1024.",
          check=Greater("c15_bs1024_reach_s", "c15_bs256_reach_s", z=0), budget="10 epochs"),
]

CITED = [
    Cited("c15_ctx_lazy_bytes", 287_047_680, "pytorch2022lazymodule", "PR description: lazy loading"),
    Cited("c15_ctx_eager_bytes", 666_632_192, "pytorch2022lazymodule", "PR description: eager loading"),
]
