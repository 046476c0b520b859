// adamw.cuh -- the fused AdamW parameter update: the twin of the NumPy lines of
// vca_ref/train/optim.py adamw_update (torch.optim.AdamW, amsgrad=False).  Needs common.cuh.
// Reference: vca_ref/train/optim.py -- each "// ref:" line below is a line of it, verbatim
// (tests/test_fast_parity.py checks), and the code under it computes that line.
//
//   p <- p (1 - lr wd)                                   decoupled weight decay
//   m <- m + (1 - b1)(g - m)            (= b1 m + (1 - b1) g;  torch: m.lerp_(g, 1 - b1))
//   v <- b2 v + (1 - b2) g^2
//   p <- p - lr/(1 - b1^t) * m / (sqrt(v)/sqrt(1 - b2^t) + eps)
//
// The per-step scalars are Python floats in the reference, so the host computes them in
// double and passes them rounded to T:  decay = 1 - lr wd,  omb1 = 1 - b1,  omb2 = 1 - b2,
// bc2_sqrt = sqrt(1 - b2^t),  step_size = lr / (1 - b1^t).
#ifndef VCA_ADAMW_CUH
#define VCA_ADAMW_CUH
#ifndef VCA_COMMON_CUH
#error "adamw.cuh needs common.cuh first"
#endif

namespace vca {

template <typename T>
VCA_HD void adamw_update(T& p, T& m, T& v, T g, T decay, T omb1, T b2, T omb2, T eps,
                         T bc2_sqrt, T step_size) {
    // the decay factor of the last line, applied first (decay == 1 exactly when wd == 0)
    p = p * decay;
    // ref: m[...] = m + (1.0 - beta1) * (g - m)
    m = m + (g - m) * omb1;
    // ref: v[...] = beta2 * v + (1.0 - beta2) * g ** 2
    v = v * b2 + g * g * omb2;
    // ref: denom = xp.sqrt(v) / math.sqrt(bias_c2) + eps
    // ref: p[...] = p * (1.0 - lr * weight_decay) - step_size * (m / denom)
    p = p - m / (xsqrt(v) / bc2_sqrt + eps) * step_size;
}

}  // namespace vca

#endif  // VCA_ADAMW_CUH
