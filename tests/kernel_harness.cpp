// kernel_harness.cpp -- thin extern "C" loops that run the vca_ref/kernels/*.cuh math on host
// arrays, for tests/test_kernels_cpu.py.  The test prepends the .cuh text exactly as the CUDA
// preamble does (vca_ref.fast.kernels.cuh_text), builds a shared library with g++ in a temporary
// directory and calls it through ctypes.  Nothing here is math: each loop calls one .cuh function.
// Row-wise routines run with vca::SerialTeam (one lane), the host stand-in for a thread block.
#ifndef VCA_ADAMW_CUH
#error "the test prepends every .cuh file before this harness"
#endif

typedef long long i64;

// One set of exports per dtype: name_f32 (float) and name_f64 (double).
#define VCA_EXPORTS(T, S)                                                                      \
extern "C" void gelu_erf_forward_##S(const T* x, T* y, i64 n) {                                \
    for (i64 i = 0; i < n; ++i) y[i] = vca::gelu_erf_forward(x[i]);                            \
}                                                                                              \
extern "C" void gelu_erf_backward_##S(const T* dy, const T* x, T* dx, i64 n) {                 \
    for (i64 i = 0; i < n; ++i) dx[i] = vca::gelu_erf_backward(dy[i], x[i]);                   \
}                                                                                              \
extern "C" void gelu_tanh_forward_##S(const T* x, T* y, i64 n) {                               \
    for (i64 i = 0; i < n; ++i) y[i] = vca::gelu_tanh_forward(x[i]);                           \
}                                                                                              \
extern "C" void gelu_tanh_backward_##S(const T* dy, const T* x, T* dx, i64 n) {                \
    for (i64 i = 0; i < n; ++i) dx[i] = vca::gelu_tanh_backward(dy[i], x[i]);                  \
}                                                                                              \
extern "C" void silu_forward_##S(const T* x, T* y, T* s, i64 n) {                              \
    for (i64 i = 0; i < n; ++i) y[i] = vca::silu_forward(x[i], s[i]);                          \
}                                                                                              \
extern "C" void silu_backward_##S(const T* dy, const T* x, const T* s, T* dx, i64 n) {         \
    for (i64 i = 0; i < n; ++i) dx[i] = vca::silu_backward(dy[i], x[i], s[i]);                 \
}                                                                                              \
extern "C" void diff_combine_forward_##S(const T* a, const T* b, T lam, T* z, i64 n) {         \
    for (i64 i = 0; i < n; ++i) z[i] = vca::diff_combine_forward(a[i], b[i], lam);             \
}                                                                                              \
extern "C" void diff_combine_backward_b_##S(const T* dz, T lam, T* db, i64 n) {                \
    for (i64 i = 0; i < n; ++i) db[i] = vca::diff_combine_backward_b(dz[i], lam);              \
}                                                                                              \
/* x, y (B, N, C); shift, scale (B, C): the [:, None, :] broadcast written out */              \
extern "C" void modulate_forward_##S(const T* x, const T* shift, const T* scale, T* y,        \
                                     i64 B, i64 N, i64 C) {                                    \
    for (i64 b = 0; b < B; ++b)                                                                \
        for (i64 n = 0; n < N; ++n)                                                            \
            for (i64 c = 0; c < C; ++c)                                                        \
                y[(b * N + n) * C + c] = vca::modulate_forward(                                \
                    x[(b * N + n) * C + c], shift[b * C + c], scale[b * C + c]);               \
}                                                                                              \
extern "C" void modulate_backward_x_##S(const T* dy, const T* scale, T* dx,                   \
                                        i64 B, i64 N, i64 C) {                                 \
    for (i64 b = 0; b < B; ++b)                                                                \
        for (i64 n = 0; n < N; ++n)                                                            \
            for (i64 c = 0; c < C; ++c)                                                        \
                dx[(b * N + n) * C + c] =                                                      \
                    vca::modulate_backward_x(dy[(b * N + n) * C + c], scale[b * C + c]);       \
}                                                                                              \
extern "C" void softmax_backward_##S(const T* dy, const T* y, T* dx, i64 rows, int K) {        \
    const vca::SerialTeam team;                                                                \
    for (i64 r = 0; r < rows; ++r)                                                             \
        vca::softmax_backward_row(team, dy + r * K, y + r * K, dx + r * K, K);                 \
}                                                                                              \
extern "C" void rmsnorm_forward_##S(const T* z, const T* w, T* y, T* zhat, T* rstd,            \
                                    i64 rows, int d, T eps) {                                  \
    const vca::SerialTeam team;                                                                \
    for (i64 r = 0; r < rows; ++r)                                                             \
        vca::rmsnorm_forward_row(team, z + r * d, w, y + r * d, zhat + r * d, rstd + r, d, eps); \
}                                                                                              \
extern "C" void rmsnorm_backward_##S(const T* dy, const T* zhat, const T* w, const T* rstd,    \
                                     T* dz, i64 rows, int d) {                                 \
    const vca::SerialTeam team;                                                                \
    for (i64 r = 0; r < rows; ++r)                                                             \
        vca::rmsnorm_backward_row(team, dy + r * d, zhat + r * d, w, rstd[r], dz + r * d, d);  \
}                                                                                              \
extern "C" void adamw_update_##S(T* p, T* m, T* v, const T* g, i64 n, T decay, T omb1, T b2,  \
                                 T omb2, T eps, T bc2_sqrt, T step_size) {                     \
    for (i64 i = 0; i < n; ++i)                                                                \
        vca::adamw_update(p[i], m[i], v[i], g[i], decay, omb1, b2, omb2, eps, bc2_sqrt,       \
                          step_size);                                                          \
}

VCA_EXPORTS(float, f32)
VCA_EXPORTS(double, f64)

// The constants of activations.cuh as doubles, compared exactly with vca_ref.ops.activations.
extern "C" double vca_constant(int which) {
    switch (which) {
        case 0: return VCA_SQRT_2_OVER_PI;
        case 1: return VCA_INV_SQRT_2;
        case 2: return VCA_INV_SQRT_2PI;
        case 3: return VCA_GELU_TANH_C;
        default: return -1.0;
    }
}
