"""Chapter 10 (convolution weight gradients): the page's claims, checked on the executed chapter.

References: the closed forms of the chapter (slope 1 against n - k + 1 for a white field),
the "sqrt n" reading (slope 1/2); tolerances in Monte Carlo standard errors (the largest of
about 50 |z| values of a correct law stays below 4.5 with probability above 0.999).
"""

from claims import AtMost, Claim, Close, Equal, Greater

STEM = "10_conv_weight_gradients"
Z_MAX = 4.5

CLAIMS = [
    Claim(id="ch10.one-step-lowers-loss",
          text="One SGD step with the inverse largest curvature as step size lowers the squared error.",
          check=Greater("c10_loss_before", "c10_loss_after", z=0)),
    Claim(id="ch10.patches-span-the-kernel",
          text="The 5x5 patches of one digit span all 25 dimensions of a 5x5 kernel.",
          check=Equal("c10_patch_rank", "c10_kernel_numbers")),
    Claim(id="ch10.sd-law-within-mc-error",
          text="sd(dw) = (n-k+1) sigma_x sigma_g holds for five non-Gaussian distributions within Monte Carlo error.",
          check=AtMost("c10_max_z", Z_MAX)),
    Claim(id="ch10.slopes-within-se-of-one",
          text="Each distribution's log-log slope against n-k+1 is within a few standard errors of 1.",
          check=AtMost("c10_slope_z_max", Z_MAX)),
    Claim(id="ch10.slopes-far-above-sqrt",
          text="The lowest 95 % bound of the slopes is far above the 1/2 of a sqrt(n) law.",
          check=Greater("c10_low_min", 0.5, z=0)),
    Claim(id="ch10.white-x-keeps-linear-law",
          text="With white X and smooth dY the exact slope against m is 1.",
          check=Close("c10_slope_ws", 1.0, 1e-9)),
    Claim(id="ch10.white-dy-keeps-linear-law",
          text="With smooth X and white dY the exact slope against m is 1.",
          check=Close("c10_slope_sw", 1.0, 1e-9)),
    Claim(id="ch10.smooth-smooth-faster",
          text="With both fields smooth at fixed content the exact slope approaches 2 (above 1.8 over these sizes).",
          check=Greater("c10_slope_ss", 1.8, z=0)),
    Claim(id="ch10.correlated-mc-matches-exact",
          text="The Monte Carlo estimates for correlated fields agree with the exact values within their errors.",
          check=AtMost("c10_corr_max_z", Z_MAX)),
    Claim(id="ch10.smooth-smooth-mc-excludes-linear",
          text="The Monte Carlo slope for smooth/smooth excludes the linear law (its 95 % interval lies above 1).",
          check=Greater("c10_mc_slope_ss_low", 1.0, z=0)),
    Claim(id="ch10.batchnorm-matches-prediction",
          text="With batch norm the measured gradients agree with the predicted rms within their errors.",
          check=AtMost("c10_bn_max_z", Z_MAX)),
    Claim(id="ch10.batchnorm-input-scale-free",
          text="With batch norm multiplying X by 10 leaves the kernel gradient unchanged (to rounding).",
          check=AtMost("c10_bn_sx_ratio_max", 1e-6)),
    Claim(id="ch10.adam-ignores-gradient-scale",
          text="Scaling every gradient by 254 leaves Adam's kernel unchanged after three steps (to rounding).",
          check=AtMost("c10_adam_gap", 1e-9)),
]
