// activations.cuh -- GELU (exact erf and tanh approximation) and SiLU, the twins of
// vca_ref/ops/activations.py.  Needs common.cuh first.
// Reference: vca_ref/ops/activations.py -- each "// ref:" line below is a line of it, verbatim
// (tests/test_fast_parity.py checks), and the code under it computes that line.
//
//   gelu(x)      = x * Phi(x),                 Phi(x) = (1 + erf(x / sqrt 2)) / 2
//   gelu'(x)     = Phi(x) + x * phi(x),        phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//   gelu_tanh(x) = x/2 * (1 + t),              t = tanh(sqrt(2/pi) (x + c x^3)),  c = 0.044715
//   gelu_tanh'   = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 c x^2)
//   silu(x)      = x * s,                      s = sigmoid(x) = (1 + tanh(x/2)) / 2
//   silu'(x)     = s * (1 + x (1 - s))
#ifndef VCA_ACTIVATIONS_CUH
#define VCA_ACTIVATIONS_CUH
#ifndef VCA_COMMON_CUH
#error "activations.cuh needs common.cuh first"
#endif

// The constants of vca_ref/ops/activations.py, written as Python's repr of each double
// (shortest round-trip form), so T(constant) equals NumPy's float32/float64 of the same
// Python float.  tests/test_kernels_cpu.py compares them with the Python values exactly.
// Macros, not constexpr variables: NVRTC warns about unused namespace constants and emits
// static members as .global .f64 data even in float kernels.
#define VCA_SQRT_2_OVER_PI 0.7978845608028654   // math.sqrt(2.0 / math.pi)
#define VCA_INV_SQRT_2 0.7071067811865475       // 1.0 / math.sqrt(2.0)
#define VCA_INV_SQRT_2PI 0.3989422804014327     // 1.0 / math.sqrt(2.0 * math.pi)
#define VCA_GELU_TANH_C 0.044715

namespace vca {

template <typename T>
VCA_HD T gelu_erf_forward(T x) {
    // ref: y = 0.5 * x * (1.0 + erf(x * INV_SQRT_2))
    return T(0.5) * x * (T(1.0) + xerf(x * T(VCA_INV_SQRT_2)));
}

template <typename T>
VCA_HD T gelu_erf_backward(T dy, T x) {
    // ref: cdf = 0.5 * (1.0 + erf(x * INV_SQRT_2))
    const T cdf = T(0.5) * (T(1.0) + xerf(x * T(VCA_INV_SQRT_2)));
    // ref: pdf = INV_SQRT_2PI * xp.exp(-0.5 * x * x)
    const T pdf = T(VCA_INV_SQRT_2PI) * xexp(T(-0.5) * x * x);
    // ref: return dout * (cdf + x * pdf)
    return dy * (cdf + x * pdf);
}

template <typename T>
VCA_HD T gelu_tanh_inner(T x) {
    // ref: t = xp.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x))
    return xtanh(T(VCA_SQRT_2_OVER_PI) * (x + T(VCA_GELU_TANH_C) * x * x * x));
}

template <typename T>
VCA_HD T gelu_tanh_forward(T x) {
    const T t = gelu_tanh_inner(x);
    // ref: y = 0.5 * x * (1.0 + t)
    return T(0.5) * x * (T(1.0) + t);
}

template <typename T>
VCA_HD T gelu_tanh_backward(T dy, T x) {
    const T t = gelu_tanh_inner(x);
    // ref: dudx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * x * x)
    // (3.0 * C is a product of Python doubles, so one constant here)
    const T dudx = T(VCA_SQRT_2_OVER_PI)
                   * (T(1.0) + T(3.0 * VCA_GELU_TANH_C) * x * x);
    // ref: return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dudx)
    return dy * (T(0.5) * (T(1.0) + t) + T(0.5) * x * (T(1.0) - t * t) * dudx);
}

template <typename T>
VCA_HD T sigmoid(T x) {
    // ref: return 0.5 * (1.0 + xp.tanh(0.5 * x))
    // (the overflow-free logistic function)
    return T(0.5) * (T(1.0) + xtanh(T(0.5) * x));
}

template <typename T>
VCA_HD T silu_forward(T x, T& s) {
    // ref: s = sigmoid(x)
    // ref: return x * s, SiluCache(x=x, s=s)
    // (s is kept for the backward pass)
    s = sigmoid(x);
    return x * s;
}

template <typename T>
VCA_HD T silu_backward(T dy, T x, T s) {
    // ref: return dout * s * (1.0 + x * (1.0 - s))
    return dy * s * (T(1.0) + x * (T(1.0) - s));
}

}  // namespace vca

#endif  // VCA_ACTIVATIONS_CUH
