"""Chapter 14's page claims: augmentation, AlexNet's counts, human error, degradation at small scale."""

from claims import AtLeast, AtMost, Cited, Claim, Close, Equal, Greater, Monotone, Tie

STEM = "14_alexnet_resnet"

CLAIMS = [
    Claim(id="ch14.paper-factor",
          text="The paper's factor of 2048 counts 32^2 x 2 crops and flips, not the 33^2 x 2 "
               "that fit.",
          check=Equal("c14_paper_factor", "c14_paper_factor_count"), values=("c14_views_imagenet",)),
    Claim(id="ch14.jitter-sd-scale-free",
          text="The standard-deviation version of the PCA jitter moves the pixels by the same "
               "fraction of their range with pixels in [0, 1] and in {0, ..., 255}.",
          check=Close("c14_shift_sd", "c14_shift_sd255", 1e-3)),  # float32 eigenvalues
    Claim(id="ch14.aug-fits-300",
          text="Without augmentation the network fits its 300 digits exactly.",
          check=AtLeast("c14_train_noaug_seeds", 1.0), seeds=10, budget="300 steps"),
    Claim(id="ch14.aug-helps",
          text="Shifted copies raise the test accuracy of the small CNN on 300 digits, after "
               "300 steps.",
          check=Greater("c14_acc_aug_seeds", "c14_acc_noaug_seeds"), seeds=10,
          budget="300 steps", values=("c14_aug_gain", "c14_aug_z", "c14_aug_wins")),
    Claim(id="ch14.alexnet-formula",
          text="The parameter counts of AlexNet's grouped and dense convolutions equal the "
               "formula c_out (c_in / g) k^2 + c_out.",
          check=Equal("c14_conv_formula", "c14_conv_module")),
    Claim(id="ch14.alexnet-sixty-million",
          text="The two-GPU network has about 60 million parameters, as the paper says.",
          check=Close("c14_alex_grouped", "c14_alex_paper_m", 1.0),  # the paper rounds to millions
          values=("c14_alex_grouped_n", "c14_alex_grouped_formula")),
    Claim(id="ch14.alexnet-fc-share",
          text="Most of AlexNet's parameters sit in its fully connected layers.",
          check=Greater("c14_alex_fc_share", 50.0, z=0)),
    Claim(id="ch14.counts-by-formula",
          text="The small and the ImageNet ResNets, plain-34 and VGG-19 have the parameter "
               "counts the formula gives.",
          check=Equal("c14_count_formula", "c14_count_module")),
    Claim(id="ch14.vgg19-count",
          text="VGG-19 has the 144 million parameters of its paper.",
          check=Close("c14_vgg19", "c14_vgg19_paper_m", 0.5)),  # the paper rounds to millions
    Claim(id="ch14.resnet-below-a1",
          text="The ResNet ensemble's top-5 error is below the trained annotator's.",
          check=Greater("c14_top5_a1", "c14_top5_resnet", z=0)),
    Claim(id="ch14.prelu-inside-a1-interval",
          text="The annotator's 95 % interval contains the PReLU-net's error.",
          check=AtMost("c14_a1_lo", "c14_top5_prelu")),
    Claim(id="ch14.prelu-below-a1-upper",
          text="The PReLU-net's error lies below the upper end of the annotator's interval.",
          check=AtMost("c14_top5_prelu", "c14_a1_hi")),
    Claim(id="ch14.deg-plain20-above-plain8",
          text="After 200 steps plain-20 has a higher training error than plain-8.",
          check=Greater("c14_err_plain20_seeds", "c14_err_plain8_seeds"), seeds=10,
          budget="200 steps", values=("c14_plain_z",)),
    Claim(id="ch14.deg-plain-grows-with-depth",
          text="After 200 steps the plain networks' training error grows with depth: "
               "8, 20, 32 layers.",
          check=Monotone(("c14_err_plain8_seeds", "c14_err_plain20_seeds", "c14_err_plain32_seeds")),
          seeds=10, budget="200 steps"),
    Claim(id="ch14.deg-res20-below-plain20",
          text="After 200 steps residual-20 has a lower training error than plain-20.",
          check=Greater("c14_err_plain20_seeds", "c14_err_res20_seeds"), seeds=10,
          budget="200 steps"),
    Claim(id="ch14.deg-res32-below-plain32",
          text="After 200 steps residual-32 has a far lower training error than plain-32.",
          check=Greater("c14_err_plain32_seeds", "c14_err_res32_seeds"), seeds=10,
          budget="200 steps"),
    Claim(id="ch14.first-cut-no-faster",
          text="In the 25 steps after the first learning-rate cut plain-8's training error "
               "falls no faster than over the same steps without cuts (after 200 steps).",
          check=Tie("c14_cut1_drop", "c14_nocut1_drop"), seeds=10, budget="200 steps"),
    Claim(id="ch14.no-cut-ends-lower",
          text="After 200 steps plain-8 trained without cuts has a lower training error than "
               "with them.",
          check=Greater("c14_err_plain8_seeds", "c14_err_nocut8_seeds"), seeds=10,
          budget="200 steps"),
    Claim(id="ch14.long-plain8-fits",
          text="At four times the budget every seed of plain-8 fits its training digits.",
          check=AtMost("c14_err_long_plain8_seeds", 0.0), seeds=3, budget="800 steps"),
    Claim(id="ch14.long-plain20-fits",
          text="At four times the budget every seed of plain-20 fits its training digits.",
          check=AtMost("c14_err_long_plain20_seeds", 0.0), seeds=3, budget="800 steps"),
    Claim(id="ch14.grad-ratio-plain-above-res",
          text="At initialization the first-to-last gradient ratio of plain-56 exceeds that "
               "of residual-56 (five seeds).",
          check=Greater("c14_logratio_plain", "c14_logratio_res"), seeds=5, costly=True,
          values=("c14_ratio_plain", "c14_ratio_res")),
]

CITED = [
    Cited("c14_paper_factor", 2048, "krizhevsky2012imagenet", "section 4.1: a factor of 2048"),
    Cited("c14_pca_gain_paper", 1, "krizhevsky2012imagenet", "section 4.1: top-1 error down by over 1%"),
    Cited("c14_alex_paper_m", 60, "krizhevsky2012imagenet", "abstract: 60 million parameters"),
    Cited("c14_vgg19_paper_m", 144, "simonyan2015very", "Table 2, configuration E"),
    Cited("c14_vgg19_gflops", 19.6, "he2016deep", "Figure 3: VGG-19, 19.6 billion FLOPs"),
    Cited("c14_r34_gflops", 3.6, "he2016deep", "Figure 3: 34-layer plain and residual, 3.6 billion FLOPs"),
    Cited("c14_mislabelled", 5, "russakovsky2015imagenet", "sec. 6.4: 5 of annotator A1's 1500 images"),
    Cited("c14_a1_images", 1500, "russakovsky2015imagenet", "sec. 6.4: annotator A1"),
    Cited("c14_a2_images", 258, "russakovsky2015imagenet", "sec. 6.4: annotator A2"),
    Cited("c14_top5_a1", 5.1, "russakovsky2015imagenet", "sec. 6.4: A1's top-5 error"),
    Cited("c14_top5_a2", 12.0, "russakovsky2015imagenet", "sec. 6.4: A2's top-5 error"),
    Cited("c14_top5_googlenet_a1", 6.8, "russakovsky2015imagenet", "sec. 6.4: GoogLeNet on A1's images"),
    Cited("c14_top5_clarifai", 11.7, "russakovsky2015imagenet", "Table: ILSVRC 2013 winner"),
    Cited("c14_top5_alexnet", 15.3, "krizhevsky2012imagenet", "Table 2: 7 CNNs, test set"),
    Cited("c14_top5_alexnet5", 16.4, "krizhevsky2012imagenet", "Table 2: 5 CNNs"),
    Cited("c14_top5_googlenet", 6.7, "szegedy2015going", "Table 2: ILSVRC 2014 winner"),
    Cited("c14_top5_prelu", 4.94, "he2015delving", "abstract: 4.94 % top-5 test error"),
    Cited("c14_top5_resnet", 3.57, "he2016deep", "Table 5 / abstract: 3.57 % top-5 ensemble"),
]
