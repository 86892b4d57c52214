"""Chapter 9 (convolution arithmetic): the page's claims, checked on the executed chapter.

References are worked out by hand from the output-size formula (below), or are torchvision's
module sizes; the training comparisons rest on 5 seeds (costly runs: the page says so) with
paired standard errors, since the five versions of one seed share the batch order.
"""

from claims import Cited, Claim, Close, Equal, Greater, Tie

STEM = "09_conv_arithmetic"
A = "c09_acc{}_k{}_s{}_p{}"
BASE, PAD, K3, S2, S3 = (5, 1, 0), (5, 1, 2), (3, 1, 1), (5, 2, 2), (3, 3, 1)
acc = lambda b, v: A.format(b, *v)
# the MNIST network by hand: conv 10x(25+1), conv 20x(10*25+1), fc 320x100+100, fc 100x10+10
MNIST_FC = 20 * 4 * 4 * 100 + 100
MNIST_PARAMS = 10 * 26 + 20 * 251 + MNIST_FC + 1010
# padding 2, kernel 5 on 28: per axis 28 outputs x 5 taps, 6 of them in the padding
ZERO_SHARE = 1 - (134 / 140) ** 2
# option B: a 1x1 conv (no bias) and a batch norm where a stage doubles its channels
PROJECTIONS = sum(c * 2 * c + 2 * (2 * c) for c in (64, 128, 256))


def _trained(cid, text, check, budget, doubled=None):
    return Claim(id=cid, text=text, check=check, seeds=5, costly=True, budget=budget, doubled=doubled)


CLAIMS = [
    Claim(id="ch09.grid-conv-agrees", text="conv_output_size agrees with nn.Conv2d on every setting of the grid, refusals included.",
          check=Equal("c09_conv_agree", "c09_grid_conv")),
    Claim(id="ch09.grid-pool-agrees", text="pool_output_size agrees with nn.MaxPool2d on every setting, both rounding modes.",
          check=Equal("c09_pool_agree", "c09_grid_pool")),
    Claim(id="ch09.example-params", text="Eight 5x5x3 filters have 8 (5*5*3 + 1) = 608 parameters.",
          check=Equal("c09_ex_params", 608)),
    Claim(id="ch09.example-side-valid", text="On a 32x32 image without padding the output side is 28.",
          check=Equal("c09_ex_side_valid", 28)),
    Claim(id="ch09.example-side-same", text="With padding 2 the output side stays 32.",
          check=Equal("c09_ex_side_same", 32)),
    Claim(id="ch09.valid-stack-depth", text="An unpadded stack of 3x3 convolutions on 32x32 ends after 15 layers, at 2x2.",
          check=Equal("c09_max_depth", 15)),
    Claim(id="ch09.corner-reads", text="With padding 2 a corner pixel is read by 9 5x5 windows instead of 1.",
          check=Equal("c09_corner_same", 9)),
    Claim(id="ch09.padding-mac-ratio", text="Padding 2 multiplies a 5x5 layer's multiply-adds on 28x28 by (28/24)^2.",
          check=Close("c09_mac_ratio", (28 / 24) ** 2, 1e-12)),
    Claim(id="ch09.padding-zero-share", text="A share 1 - (134/140)^2 of the padded layer's multiply-adds read a padded zero.",
          check=Close("c09_on_zeros", ZERO_SHARE, 1e-12)),
    Claim(id="ch09.padding-border-edge", text="A horizontal-gradient filter on a flat grey image with padding 1 fires at the 56 pixels of the left and right columns.",
          check=Equal("c09_fired", 2 * 28)),
    Claim(id="ch09.mnist-params", text="The MNIST network has 38,390 parameters.",
          check=Equal("c09_base_params", MNIST_PARAMS)),
    Claim(id="ch09.mnist-fc-share", text="The first fully connected layer holds most of them.",
          check=Close("c09_base_fc_share", MNIST_FC / MNIST_PARAMS, 1e-12)),
    Claim(id="ch09.min-padding-14", text="With 14x14 kernels the smallest valid padding is 3.",
          check=Equal("c09_min_pad_14", 3)),
    Claim(id="ch09.stride3-side", text="With 3x3 kernels at stride 3 and padding 1 the first convolution maps 28 to 10.",
          check=Equal("c09_side_s3", 10)),
    Claim(id="ch09.resnet34-count", text="torchvision's ResNet-34 has 21,797,672 parameters.",
          check=Equal("c09_resb_total", 21_797_672)),
    Claim(id="ch09.vgg19-count", text="VGG-19 has 143,667,240 parameters.",
          check=Equal("c09_vgg_total", 143_667_240)),
    Claim(id="ch09.option-b-projections", text="Option B's three projection shortcuts add the difference between ResNet-34 and plain-34.",
          check=Equal("c09_proj", PROJECTIONS)),
    Claim(id="ch09.gmacs-round-to-paper", text="The multiply-adds of VGG-19 round to the paper's 19.6 billion FLOPs.",
          check=Close("c09_vgg_gmacs", "c09_paper_vgg", 0.05)),
    Claim(id="ch09.vgg-head-holds-params", text="Most of VGG-19's parameters sit in its three fully connected layers.",
          check=Greater("c09_vgg_fc_share", 0.5, z=0)),
    Claim(id="ch09.plain-fewer-params", text="Plain-34, twice as deep, has several times fewer parameters than VGG-19.",
          check=Greater("c09_ratio_params", 1, z=0)),
    Claim(id="ch09.quoted-34-gap", text="The plain-34 with batch norm and no conv biases has more parameters than the quoted 21,616,232.",
          check=Greater("c09_quoted_gap", 0, z=0)),
    _trained("ch09.stride3-lowest-100", "After 100 steps stride 3 is below every other version (below the next lowest by 2 paired SE).",
             Greater("c09_acc100_next", acc(100, S3)), "100 steps", "ch09.stride3-lowest-200"),
    _trained("ch09.stride3-lowest-200", "After 200 steps stride 3 is below every other version.",
             Greater("c09_acc200_next", acc(200, S3)), "200 steps"),
    _trained("ch09.kernel5-above-3-100", "Kernel 5 is above kernel 3 (padding kept, stride 1) after 100 steps.",
             Greater(acc(100, PAD), acc(100, K3)), "100 steps", "ch09.kernel5-above-3-200"),
    _trained("ch09.kernel5-above-3-200", "Kernel 5 stays above kernel 3 after 200 steps.",
             Greater(acc(200, PAD), acc(200, K3)), "200 steps"),
    _trained("ch09.stride1-above-2-100", "Stride 1 is above stride 2 (kernel 5, padding 2) after 100 steps.",
             Greater(acc(100, PAD), acc(100, S2)), "100 steps", "ch09.stride1-above-2-200"),
    _trained("ch09.stride1-above-2-200", "Stride 1 stays above stride 2 after 200 steps.",
             Greater(acc(200, PAD), acc(200, S2)), "200 steps"),
    _trained("ch09.gaps-shrink", "From 100 to 200 steps the gaps of kernel 3, stride 2 and stride 3 shrink (by a factor above 1).",
             Greater("c09_shrink_min", 1.0, z=0), "200 steps"),
    _trained("ch09.padding-unresolved-100", "After 100 steps padding 2 against 0 is not resolved.",
             Tie(acc(100, PAD), acc(100, BASE)), "100 steps"),
    _trained("ch09.padding-gain-200", "After 200 steps padding 2 gains a little over padding 0, resolved by the paired comparison.",
             Greater(acc(200, PAD), acc(200, BASE)), "200 steps"),
]

CITED = [
    Cited("c09_paper_vgg", 19.6, "he2016deep", "Figure 3 (VGG-19, 19.6 billion FLOPs)"),
    Cited("c09_paper_plain", 3.6, "he2016deep", "Figure 3 (34-layer plain, 3.6 billion FLOPs)"),
]
