// softmax.cuh -- the softmax backward row update of vca_ref/ops/softmax.py.
// Needs common.cuh and reduce.cuh first.
// Reference: vca_ref/ops/softmax.py -- each "// ref:" line below is a line of it, verbatim
// (tests/test_fast_parity.py checks), and the code under it computes that line.
//
//   y = softmax(x) along the last axis (K entries per row)
//   dx = y * (dout - rowdot),   rowdot = sum_k dout_k y_k
#ifndef VCA_SOFTMAX_CUH
#define VCA_SOFTMAX_CUH
#if !defined(VCA_COMMON_CUH) || !defined(VCA_REDUCE_CUH)
#error "softmax.cuh needs common.cuh and reduce.cuh first"
#endif

namespace vca {

template <typename T>
VCA_HD T softmax_backward_elem(T y, T dy, T rowdot) {
    // y * (dout - rowdot)
    return y * (dy - rowdot);
}

// One row of K entries: dy, y (K,) -> dx (K,).
template <typename T, typename Team>
VCA_HD void softmax_backward_row(const Team& team, const T* dy, const T* y, T* dx, int K) {
    // ref: dx = y * (dout - (dout * y).sum(-1, keepdims=True))
    // 1. rowdot = (dout * y).sum(-1, keepdims=True)
    T part = T(0);
    for (int k = team.lane; k < K; k += team.size) part += dy[k] * y[k];
    const T rowdot = team.sum(part);
    // 2. dx = y * (dout - rowdot)
    for (int k = team.lane; k < K; k += team.size)
        dx[k] = softmax_backward_elem(y[k], dy[k], rowdot);
}

}  // namespace vca

#endif  // VCA_SOFTMAX_CUH
