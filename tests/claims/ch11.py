"""Chapter 11 (pooling): the page's claims, checked on the executed chapter.

References come from outside the chapter's code: closed forms (Phi(b)^4, the exact routing rate
9/64 (1 + 1/256)), PyTorch's own layers; tolerances from binomial Monte Carlo errors.
"""

from math import sqrt
from statistics import NormalDist

from claims import Claim, Close, Equal, Greater, Monotone

STEM = "11_pooling"
N = "c11_noise_seeds_"
SH = "c11_shift_seeds_"
STACK_EXACT = 9 / 64 * (1 + 1 / 256)  # by hand: see the chapter's enumeration
STACK_N = 2000  # the sampled 4x4 inputs
WINDOWS = 64 * 16 * 16  # 2x2 windows of the 64 maps of 32x32
phi4 = lambda b: NormalDist().cdf(b) ** 4
binom = lambda p, n, k=5: k * sqrt(p * (1 - p) / n)

CLAIMS = [
    Claim(id="ch11.max-backward-equals-autograd",
          text="maxpool_backward equals autograd of F.max_pool2d on every case of the grid, ties included.",
          check=Equal("c11_max_agree", "c11_max_cases")),
    Claim(id="ch11.avg-backward-equals-autograd",
          text="avgpool_backward equals autograd (and passes gradcheck) on every shape of the grid.",
          check=Equal("c11_avg_agree", "c11_avg_cases")),
    Claim(id="ch11.stack-rate-sampled-matches-exact",
          text="On random {0,1} 4x4 inputs the stack and the single pool route differently at the exact rate, within sampling error.",
          check=Close("c11_stack_differ", STACK_EXACT, binom(STACK_EXACT, STACK_N, 3))),
    Claim(id="ch11.stack-rate-exact-formula",
          text="Enumerating all 2^16 inputs gives the rate 9/64 (1 + 1/256).",
          check=Close("c11_stack_differ_exact", STACK_EXACT, 1e-12)),
    Claim(id="ch11.stack-never-differs-without-ties",
          text="On Gaussian inputs (no ties) the stack and the single pool never route differently.",
          check=Equal("c11_stack_differ_gauss", 0)),
    Claim(id="ch11.stack-matches-torch",
          text="PyTorch's layers, differentiated by autograd, route as the library does (stack and single pool).",
          check=Equal("c11_stack_torch_agree", "c11_stack_torch_cases")),
    Claim(id="ch11.gaussian-avg-beats-max",
          text="Under Gaussian noise average pooling changes the map less than max pooling.",
          check=Greater(N + "gaussian_max", N + "gaussian_avg"), seeds=10),
    Claim(id="ch11.gaussian-max-beats-none",
          text="Under Gaussian noise max pooling still changes the map less than no pooling.",
          check=Greater(N + "gaussian_none", N + "gaussian_max"), seeds=10),
    Claim(id="ch11.salt-max-worse-than-none",
          text="Under salt noise max pooling is worse than no pooling.",
          check=Greater(N + "salt_max", N + "salt_none"), seeds=10),
    Claim(id="ch11.salt-avg-beats-none",
          text="Under salt noise average pooling dilutes each outlier and beats no pooling.",
          check=Greater(N + "salt_none", N + "salt_avg"), seeds=10),
    Claim(id="ch11.pepper-max-beats-avg",
          text="Under pepper noise (dropped pixels) max pooling is the most robust, ahead of average pooling.",
          check=Greater(N + "pepper_avg", N + "pepper_max"), seeds=10),
    Claim(id="ch11.pepper-avg-beats-none",
          text="Under pepper noise average pooling beats no pooling.",
          check=Greater(N + "pepper_none", N + "pepper_avg"), seeds=10),
    Claim(id="ch11.shift-larger-windows-change-less",
          text="Under a one-pixel shift larger max-pooling windows change the raw digit's map less.",
          check=Monotone((SH + "raw_max2_rc", SH + "raw_max4_rc", SH + "raw_max7_rc"), increasing=False),
          seeds=10),
    Claim(id="ch11.shift-larger-avg-windows-change-less",
          text="Under a one-pixel shift larger average-pooling windows change the raw digit's map less.",
          check=Monotone((SH + "raw_avg2_rc", SH + "raw_avg4_rc", SH + "raw_avg7_rc"), increasing=False),
          seeds=10),
    Claim(id="ch11.shift-raw-avg-wins-4",
          text="On raw digits at 4x4 average pooling changes less than max pooling under a shift.",
          check=Greater(SH + "raw_max4_rc", SH + "raw_avg4_rc"), seeds=10),
    Claim(id="ch11.shift-raw-avg-wins-7",
          text="On raw digits at 7x7 average pooling changes less than max pooling under a shift.",
          check=Greater(SH + "raw_max7_rc", SH + "raw_avg7_rc"), seeds=10),
    Claim(id="ch11.shift-feat-max-wins-7",
          text="On ReLU feature maps at 7x7 it is the other way round: max pooling changes less.",
          check=Greater(SH + "feat_avg7_rc", SH + "feat_max7_rc"), seeds=10),
    Claim(id="ch11.plateaus-inflate-unchanged",
          text="2x2 max pooling leaves more outputs unchanged on 8-bit raw digits than on float feature maps.",
          check=Greater(SH + "raw_max2_un", SH + "feat_max2_un"), seeds=10),
    Claim(id="ch11.min-live-matches-phi4-b0",
          text="At b = 0 the share of live min-pool windows equals Phi(0)^4 = 1/16 within 5 binomial errors.",
          check=Close("c11_live_b0", phi4(0), binom(phi4(0), WINDOWS))),
    Claim(id="ch11.min-live-matches-phi4-b2",
          text="At b = 2 the share of live min-pool windows equals Phi(2)^4 within 5 binomial errors.",
          check=Close("c11_live_b2", phi4(2), binom(phi4(2), WINDOWS))),
    Claim(id="ch11.min-most-live-at-b2",
          text="At b = 2 most windows are live.",
          check=Greater("c11_live_b2", 0.5, z=0)),
    Claim(id="ch11.min-gradient-only-live-windows",
          text="Autograd passes gradient through exactly the live windows.",
          check=Close("c11_min_passing", "c11_min_live", 1e-12)),
    Claim(id="ch11.mnist-min-windows-mostly-dead",
          text="On random-filter MNIST feature maps most min-pool windows are useless.",
          check=Greater("c11_mnist_dead", 0.5, z=0)),
]
