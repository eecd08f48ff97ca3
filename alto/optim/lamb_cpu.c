/* ALTO and Lamb on the CPU: the elementwise update in one loop (see alto/optim/cpu_kernel.py).
 *
 * Pass 1, per element of a piece (a whole tensor or a slice of one):
 *     gc = c*g
 *     ALTO only: d = gc - prev;  a = b1*a + (1-b1)*d;  prev = gc;  gt = gc + alpha*a   (Lamb: gt = gc)
 *     m = b2*m + (1-b2)*gt;  v = b3*v + (1-b3)*gt^2
 *     u = u_scale*m / (sqrt(v) + eps_hat) + wd*p     (the bias corrections folded into u_scale, eps_hat)
 *     g = u                                          (the gradient buffer keeps u for pass 2)
 * and the piece's sums (SUMS of alto/optim/_telemetry.py, p_sq being |p|^2 before the update):
 *     out[0] |p|^2  out[1] |u|^2  out[2] |gc|^2  out[3] |prev|^2  out[4] <gc, prev>  out[5] |d|^2
 *     out[6] |a|^2  out[7] <a, gc>                   (2..7 only with stats, and for ALTO)
 * Pass 2, once the tensor's trust ratio is known: p += scale*u, and |p|^2 after it when asked.
 *
 * Built twice: for float tensors, and with -DREAL_DOUBLE for double ones. Per-piece scalars and
 * hyper-parameters arrive as doubles either way. Sums are accumulated in `real` over runs of RUN
 * elements (which the compiler vectorises) and in double across runs.
 */
#include <math.h>
#include <stdint.h>

#ifdef REAL_DOUBLE
typedef double real;
#define SQRT sqrt
#else
typedef float real;
#define SQRT sqrtf
#endif

#define RUN 1024
#define ROLES 6 /* p, g, m, v, a, prev */

static inline void pass1(int64_t n, const real *restrict p, real *restrict g, real *restrict m,
                         real *restrict v, real *restrict a, real *restrict prev, const int with_a,
                         const int with_stats, real c, real alpha, real b1, real b2, real b3,
                         real u_scale, real eps_hat, real wd, double *restrict out)
{
    for (int64_t start = 0; start < n; start += RUN) {
        const int64_t stop = start + RUN < n ? start + RUN : n;
        real pp = 0, uu = 0, gg = 0, qq = 0, gq = 0, dd = 0, aa = 0, ag = 0;
        for (int64_t i = start; i < stop; i++) {
            const real gc = c * g[i];
            real gt = gc;
            if (with_a) {
                const real q = prev[i];
                const real d = gc - q;
                const real ai = b1 * a[i] + ((real)1 - b1) * d;
                a[i] = ai;
                prev[i] = gc;
                gt = gc + alpha * ai;
                if (with_stats) {
                    gg += gc * gc; qq += q * q; gq += gc * q; dd += d * d; aa += ai * ai; ag += ai * gc;
                }
            }
            const real mi = b2 * m[i] + ((real)1 - b2) * gt;
            const real vi = b3 * v[i] + ((real)1 - b3) * gt * gt;
            m[i] = mi;
            v[i] = vi;
            const real u = u_scale * mi / (SQRT(vi) + eps_hat) + wd * p[i];
            g[i] = u;
            pp += p[i] * p[i];
            uu += u * u;
        }
        out[0] += pp; out[1] += uu;
        if (with_a && with_stats) {
            out[2] += gg; out[3] += qq; out[4] += gq; out[5] += dd; out[6] += aa; out[7] += ag;
        }
    }
}

/* rows: ROLES pointers per piece (a and prev unused without with_a); n, u_scale, eps_hat: one per
 * piece; out: 8 doubles per piece, added to. The branches let the compiler drop what a variant
 * does not compute. */
void lamb_cpu_pass1(int64_t pieces, real *const *rows, const int64_t *n, const double *u_scale,
                    const double *eps_hat, int with_a, int with_stats, double c, double alpha, double b1,
                    double b2, double b3, double wd, double *out)
{
    for (int64_t k = 0; k < pieces; k++) {
        real *const *r = rows + ROLES * k;
        double *o = out + 8 * k;
        if (with_a && with_stats)
            pass1(n[k], r[0], r[1], r[2], r[3], r[4], r[5], 1, 1, c, alpha, b1, b2, b3, u_scale[k], eps_hat[k], wd, o);
        else if (with_a)
            pass1(n[k], r[0], r[1], r[2], r[3], r[4], r[5], 1, 0, c, alpha, b1, b2, b3, u_scale[k], eps_hat[k], wd, o);
        else
            pass1(n[k], r[0], r[1], r[2], r[3], 0, 0, 0, 0, c, alpha, b1, b2, b3, u_scale[k], eps_hat[k], wd, o);
    }
}

static inline void pass2(int64_t n, real *restrict p, const real *restrict u, real scale,
                         const int with_norm, double *restrict p_sq)
{
    for (int64_t start = 0; start < n; start += RUN) {
        const int64_t stop = start + RUN < n ? start + RUN : n;
        real pp = 0;
        for (int64_t i = start; i < stop; i++) {
            const real x = p[i] + scale * u[i];
            p[i] = x;
            if (with_norm) pp += x * x;
        }
        if (with_norm) *p_sq += pp;
    }
}

/* rows: ROLES pointers per piece as in pass 1 (p first, u in the gradient's place); scale: one
 * per piece; p_sq: one double per piece, added to when with_norm. */
void lamb_cpu_pass2(int64_t pieces, real *const *rows, const int64_t *n, const double *scale, int with_norm,
                    double *p_sq)
{
    for (int64_t k = 0; k < pieces; k++) {
        real *const *r = rows + ROLES * k;
        if (with_norm)
            pass2(n[k], r[0], r[1], scale[k], 1, p_sq + k);
        else
            pass2(n[k], r[0], r[1], scale[k], 0, p_sq + k);
    }
}
