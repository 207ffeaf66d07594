// CUDA twins of the Numba 2-D and grid kernels (ntlab/kernels/rolling.py, indicators.py).
//
// One thread per output column runs the same scalar rules, in the same order, as the Numba
// loop of that column, so the numbers match the CPU kernels: bit for bit for sums, means,
// variances, std, z-scores, returns and EMA (compiled with --fmad=false: no fused
// multiply-adds), and to the last few bits for log returns and realised volatility (CUDA's
// log and log1p are within 1 ulp, not correctly rounded).
//
// Layouts (element indices):
//   x[t * xs_t + j * xs_j]: xs_t = N, xs_j = 1 for a C-ordered (T, N) block of columns, and
//                           xs_t = 1, xs_j = 0 for one series swept over a parameter grid;
//   out[t * N + j]          (T, N) C order, so neighbouring threads write neighbouring words;
//   ring[k * N + j]         ring buffers, k < the largest window (coalesced the same way);
//   windows[j]              the window (or span) of column j.
//
// Compiled by CuPy (NVRTC) in ntlab/kernels/gpu.py. The tests also compile this file as
// C++ on the CPU (tests/gpu_host.cpp) and check it against Numba where no GPU is lent.

#ifndef NT_NAN
#define NT_NAN __longlong_as_double(0x7ff8000000000000LL)
#endif
#ifndef NT_INF
#define NT_INF __longlong_as_double(0x7ff0000000000000LL)
#endif
#define NT_MIN_NORMAL 2.2250738585072014e-308
#define NT_RECOMPUTE_RATIO 1e-5
#define NT_RECOMPUTE_EVERY 1024

// Kinds of the moment kernels: the K_* constants of ntlab/kernels/rolling.py.
#define K_SUM 0
#define K_MEAN 1
#define K_VAR 2
#define K_STD 3
#define K_ZSCORE 4
#define K_RVOL 5

__device__ inline bool nt_finite(double v) { return v - v == 0.0; }

// Add v to the compensated sum s + c (TwoSum), as _nsum_nb.
__device__ inline void nt_nsum(double &s, double &c, double v) {
    double t = s + v;
    double z = t - s;
    c += (s - (t - z)) + (v - z);
    s = t;
}

__device__ inline double nt_period(long w) {
    long m = NT_RECOMPUTE_EVERY / w;
    return (double)(w * (m > 1 ? m : 1));
}

__device__ inline double nt_return(double prev, double x) {
    if (nt_finite(prev) && nt_finite(x) && prev != 0.0) return (x - prev) / prev;
    return NT_NAN;
}

__device__ inline double nt_log_return(double prev, double x) {
    if (!(nt_finite(prev) && nt_finite(x)) || x == 0.0 || prev == 0.0) return NT_NAN;
    if ((x > 0.0) != (prev > 0.0)) return NT_NAN;
    double q = x / prev;
    if (0.5 <= q && q <= 2.0) return log1p((x - prev) / prev);
    if (NT_MIN_NORMAL <= q && q < NT_INF) return log(q);
    return log(fabs(x)) - log(fabs(prev));
}

// ---------------------------------------------------------------------------------------------
// Rolling moments: the state tuple of _moments_run_nb, one struct per thread.

struct NtMoments {
    double count, pos, until, nbad, run, last, prev, shift, s, sc, s1, s1c, s2, s2c, err;
};

__device__ inline double nt_m2(const NtMoments &m, long w) {
    double s1 = m.s1 + m.s1c;
    return (m.s2 + m.s2c) - s1 * s1 / w;
}

// _moments_push_nb: `old` leaves (once the window is full), x enters; returns the value kept.
__device__ inline double nt_push(NtMoments &m, double old, double x, int kind, long w) {
    bool moments = kind >= K_VAR;
    if (kind == K_RVOL) {
        double r = nt_log_return(m.prev, x);
        m.prev = x;
        x = r;
    }
    if (m.count >= w) {
        if (nt_finite(old)) {
            nt_nsum(m.s, m.sc, -old);
            if (moments) {
                double d = old - m.shift;
                nt_nsum(m.s1, m.s1c, -d);
                nt_nsum(m.s2, m.s2c, -(d * d));
                m.err += d * d;
            }
        } else {
            m.nbad -= 1.0;
        }
    }
    if (nt_finite(x)) {
        nt_nsum(m.s, m.sc, x);
        if (moments) {
            if (m.shift != m.shift) m.shift = x;
            double d = x - m.shift;
            nt_nsum(m.s1, m.s1c, d);
            nt_nsum(m.s2, m.s2c, d * d);
            m.err += d * d;
        }
        m.run = (m.run > 0.0 && x == m.last) ? m.run + 1.0 : 1.0;
    } else {
        m.nbad += 1.0;
        m.run = 0.0;
    }
    m.pos = (m.pos + 1.0 < w) ? m.pos + 1.0 : 0.0;
    m.count += 1.0;
    m.until -= 1.0;
    m.last = x;
    return x;
}

// _moments_check_nb: 2 when the periodic recomputation is due, 1 when the variance is inexact.
__device__ inline int nt_check(const NtMoments &m, int kind, long w) {
    if (m.until == 0.0) return 2;
    if (kind >= K_VAR && w >= 2 && m.count >= w && m.nbad == 0.0 && m.run < w) {
        if (nt_m2(m, w) < NT_RECOMPUTE_RATIO * m.err) return 1;
    }
    return 0;
}

// _moments_exact_nb: two-pass recomputation over the ring, in ring order.
__device__ inline void nt_exact(NtMoments &m, const double *ring, long stride, long w, int kind, bool periodic) {
    long n = 0;
    double t = 0.0, tc = 0.0;
    for (long i = 0; i < w; i++) {
        double v = ring[i * stride];
        if (nt_finite(v)) {
            n++;
            nt_nsum(t, tc, v);
        }
    }
    if (periodic) {
        m.s = t;
        m.sc = tc;
        m.until = nt_period(w);
    }
    if (kind >= K_VAR) {
        m.shift = n > 0 ? (t + tc) / n : NT_NAN;
        m.s1 = 0.0; m.s1c = 0.0; m.s2 = 0.0; m.s2c = 0.0;
        for (long i = 0; i < w; i++) {
            double v = ring[i * stride];
            if (nt_finite(v)) {
                double d = v - m.shift;
                nt_nsum(m.s1, m.s1c, d);
                nt_nsum(m.s2, m.s2c, d * d);
            }
        }
        m.err = m.s2 + m.s2c;
    }
}

// _moments_value_nb: the statistic of the window ending at x.
__device__ inline double nt_value(const NtMoments &m, double x, int kind, long w, double scale) {
    if (m.count < w || m.nbad > 0.0) return NT_NAN;
    double total = m.s + m.sc;
    if (kind == K_SUM) return total;
    bool constant = m.run >= w;
    double mean = constant ? x : total / w;
    if (kind == K_MEAN) return mean;
    if (w < 2) return NT_NAN;
    double m2 = nt_m2(m, w);
    double var = constant ? 0.0 : (0.0 > m2 ? 0.0 : m2) / (w - 1);
    if (kind == K_VAR) return var;
    double sd = sqrt(var);
    if (kind == K_STD) return sd;
    if (kind == K_RVOL) return sd * scale;
    return sd > 0.0 ? (x - mean) / sd : NT_NAN;
}

__device__ inline void nt_moments_column(long j, const double *x, long xs_t, long xs_j, long T, long N,
                                         const long *windows, int kind, double scale, double *ring, double *out) {
    long w = windows[j];
    NtMoments m = {0.0, 0.0, nt_period(w), 0.0, 0.0, NT_NAN, NT_NAN, NT_NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    double *r = ring + j;
    for (long k = 0; k < w; k++) r[k * N] = 0.0;
    const double *xj = x + j * xs_j;
    for (long t = 0; t < T; t++) {
        long k = (long)m.pos;
        double v = nt_push(m, r[k * N], xj[t * xs_t], kind, w);
        r[k * N] = v;
        int check = nt_check(m, kind, w);
        if (check != 0) nt_exact(m, r, N, w, kind, check == 2);
        out[t * N + j] = nt_value(m, v, kind, w, scale);
    }
}

extern "C" __global__ void nt_moments(const double *x, long xs_t, long xs_j, long T, long N, const long *windows,
                                      int kind, double scale, double *ring, double *out) {
    long j = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j < N) nt_moments_column(j, x, xs_t, xs_j, T, N, windows, kind, scale, ring, out);
}

// ---------------------------------------------------------------------------------------------
// Returns (log = 1 for log returns) and EMA (_ema_step_nb; spans in `windows`).

__device__ inline void nt_returns_column(long j, const double *x, long xs_t, long xs_j, long T, long N, int log_returns,
                                         double *out) {
    const double *xj = x + j * xs_j;
    double prev = NT_NAN;
    for (long t = 0; t < T; t++) {
        double v = xj[t * xs_t];
        out[t * N + j] = log_returns ? nt_log_return(prev, v) : nt_return(prev, v);
        prev = v;
    }
}

extern "C" __global__ void nt_returns(const double *x, long xs_t, long xs_j, long T, long N, int log_returns,
                                      double *out) {
    long j = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j < N) nt_returns_column(j, x, xs_t, xs_j, T, N, log_returns, out);
}

__device__ inline void nt_ema_column(long j, const double *x, long xs_t, long xs_j, long T, long N, const long *spans,
                                     double *out) {
    const double *xj = x + j * xs_j;
    double span = (double)spans[j];
    double alpha = 2.0 / (span + 1.0);
    double beta = 1.0 - alpha;
    double count = 0.0, mean = 0.0;
    for (long t = 0; t < T; t++) {
        double v = xj[t * xs_t];
        if (!nt_finite(v)) {
            out[t * N + j] = NT_NAN;
            continue;
        }
        mean = count == 0.0 ? v : beta * mean + alpha * v;
        if (count < span) count += 1.0;
        out[t * N + j] = count >= span ? mean : NT_NAN;
    }
}

extern "C" __global__ void nt_ema(const double *x, long xs_t, long xs_j, long T, long N, const long *spans,
                                  double *out) {
    long j = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j < N) nt_ema_column(j, x, xs_t, xs_j, T, N, spans, out);
}
