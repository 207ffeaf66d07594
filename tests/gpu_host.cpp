// Host build of ntlab/kernels/gpu_kernels.cu: the CUDA kernels compiled as plain C++, launched
// by loops over blocks and threads, so that tests/test_gpu.py checks the GPU code's arithmetic
// and indexing against the Numba kernels on machines without a GPU.
// Build: g++ -std=c++11 -O2 -ffp-contract=off -shared -fPIC -DNT_SOURCE='"<path>"' gpu_host.cpp
#include <cmath>
#define NT_NAN NAN
#define NT_INF INFINITY
#define __device__
#define __global__
struct NtDim3 { long x; };
static NtDim3 blockIdx, blockDim, threadIdx;
using std::fabs;
using std::log;
using std::log1p;
using std::sqrt;
#include NT_SOURCE

#define NT_LAUNCH(blocks, threads, call)                     \
    blockDim.x = threads;                                    \
    for (long b = 0; b < blocks; b++)                        \
        for (long t = 0; t < threads; t++) {                 \
            blockIdx.x = b;                                  \
            threadIdx.x = t;                                 \
            call;                                            \
        }

extern "C" {
void launch_nt_moments(long blocks, long threads, const double *x, long xs_t, long xs_j, long T, long N,
                       const long *windows, int kind, double scale, double *ring, double *out) {
    NT_LAUNCH(blocks, threads, nt_moments(x, xs_t, xs_j, T, N, windows, kind, scale, ring, out))
}
void launch_nt_returns(long blocks, long threads, const double *x, long xs_t, long xs_j, long T, long N,
                       int log_returns, double *out) {
    NT_LAUNCH(blocks, threads, nt_returns(x, xs_t, xs_j, T, N, log_returns, out))
}
void launch_nt_ema(long blocks, long threads, const double *x, long xs_t, long xs_j, long T, long N,
                   const long *spans, double *out) {
    NT_LAUNCH(blocks, threads, nt_ema(x, xs_t, xs_j, T, N, spans, out))
}
}
