// combine.cuh -- the differential combine of VCA (vca_ref/ops/diff_combine.py) and the adaLN
// modulation of DiT (vca_ref/ops/modulate.py).  Needs common.cuh first.
// Reference: vca_ref/ops/diff_combine.py vca_ref/ops/modulate.py -- each "// ref:" line below is a
// line of one of them, verbatim (tests/test_fast_parity.py checks).
//
//   z = a - lam * b                      dout -> (da, db, dlam) = (dout, -lam dout, -sum(dout * b))
//   y = x * (1 + scale) + shift          dout -> dx = dout * (1 + scale)
// The reductions (dlam, dshift, dscale) stay CuPy sums; only the elementwise parts are here.
#ifndef VCA_COMBINE_CUH
#define VCA_COMBINE_CUH
#ifndef VCA_COMMON_CUH
#error "combine.cuh needs common.cuh first"
#endif

namespace vca {

template <typename T>
VCA_HD T diff_combine_forward(T a, T b, T lam) {
    // ref: z = a - lam * b
    return a - lam * b;
}

template <typename T>
VCA_HD T diff_combine_backward_b(T dz, T lam) {
    // ref: return dout, -cache.lam * dout, -(dout * cache.b).sum()
    // (db, the second term)
    return -lam * dz;
}

template <typename T>
VCA_HD T modulate_forward(T x, T shift, T scale) {
    // ref: y = x * (1.0 + scale[:, None, :]) + shift[:, None, :]
    return x * (T(1.0) + scale) + shift;
}

template <typename T>
VCA_HD T modulate_backward_x(T dy, T scale) {
    // ref: dx = dout * (1.0 + scale[:, None, :])
    return dy * (T(1.0) + scale);
}

}  // namespace vca

#endif  // VCA_COMBINE_CUH
