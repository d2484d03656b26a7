/* fedchain's native aggregation kernels: FedAvg's running mean in one pass over the rows, and Multi-Krum's Gram
 * matrix.
 *
 * Built on first use by fedchain/aggregation/_native.py (plain C11, no Python or torch headers) and called
 * through ctypes, which releases the GIL, so the caller's threads each run one span of D.
 *
 * Arithmetic, element by element, the same as torch's float32 lerp_ with a scalar weight (see rules.fedavg):
 *   out = x_0, then for each further row i:  diff = x_i - out                     (one rounding)
 *                                             out  = fmaf(coef_i, diff, base_i)   (one rounding)
 *   where base_i = out and coef_i = t_i when t_i < 0.5, else base_i = x_i and coef_i = t_i - 1.
 * fmaf rounds once by definition (C11 7.12.13.1): on FMA hardware it is one instruction, elsewhere libm computes
 * it exactly, so the bytes are the same on every CPU. Compile with -ffp-contract=off so that the compiler adds
 * no fusion of its own. Rows are processed a block of D at a time so that the block of out stays in L1 while
 * the K rows stream through once: memory traffic is K reads + 1 write of D floats.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define FEDCHAIN_BLOCK 2048 /* floats of out kept in L1 (8 KiB) */

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
/* One build for every x86-64 CPU: an AVX2+FMA clone chosen at load time, and a baseline one. */
#define FEDCHAIN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FEDCHAIN_CLONES
#endif

int fedchain_native_abi(void) { return 2; }

/* rows: k pointers to n floats each; coef, small: k entries (entry 0 unused); out: n floats. */
FEDCHAIN_CLONES
void fedchain_fedavg_lerp(const float *const *rows, const float *coef, const unsigned char *small, int k,
                          float *out, size_t n) {
    for (size_t start = 0; start < n; start += FEDCHAIN_BLOCK) {
        size_t m = n - start < FEDCHAIN_BLOCK ? n - start : FEDCHAIN_BLOCK;
        float *restrict o = out + start;
        memcpy(o, rows[0] + start, m * sizeof(float));
        for (int i = 1; i < k; i++) {
            const float *restrict x = rows[i] + start;
            const float c = coef[i];
            if (small[i]) {
                for (size_t j = 0; j < m; j++) o[j] = fmaf(c, x[j] - o[j], o[j]);
            } else {
                for (size_t j = 0; j < m; j++) o[j] = fmaf(c, x[j] - o[j], x[j]);
            }
        }
    }
}

/* Multi-Krum's Gram matrix: gram[i * k + j] += sum over the span of x_i * x_j in double, for i <= j.
 *
 * Products of floats are exact in double, so the only rounding is in the sums (and fused or separate multiply-add
 * agree). Each pair accumulates in FEDCHAIN_LANES fixed lanes (element index mod FEDCHAIN_LANES), summed at the
 * end in a fixed order. The caller certifies what it decides from this matrix with an error bound that holds for
 * any order (rules.fast_gram), so the order here is a matter of speed only. Per block of D the rows are widened
 * to double once, into a scratch that stays in cache, and pairs are formed four at a time (one row against four)
 * to load each value once per four products. Returns 0, or -1 if out of memory. */
#define FEDCHAIN_LANES 8
#define FEDCHAIN_GRAM_BLOCK 256

typedef double fedchain_v4d __attribute__((vector_size(32)));
typedef float fedchain_v4f __attribute__((vector_size(16)));
#define FEDCHAIN_VECS (FEDCHAIN_GRAM_BLOCK / 4) /* vectors of 4 doubles per row of a block */

FEDCHAIN_CLONES
int fedchain_gram(const float *const *rows, int k, size_t n, double *gram) {
    const size_t pairs = (size_t)k * (size_t)k;
    fedchain_v4d *acc = aligned_alloc(32, pairs * 2 * sizeof(fedchain_v4d)); /* 2 x 4 = 8 lanes per pair */
    fedchain_v4d *wide = aligned_alloc(32, (size_t)k * FEDCHAIN_VECS * sizeof(fedchain_v4d));
    if (acc == NULL || wide == NULL) {
        free(acc);
        free(wide);
        return -1;
    }
    memset(acc, 0, pairs * 2 * sizeof(fedchain_v4d));
    for (size_t start = 0; start < n; start += FEDCHAIN_GRAM_BLOCK) {
        size_t m = n - start < FEDCHAIN_GRAM_BLOCK ? n - start : FEDCHAIN_GRAM_BLOCK;
        size_t vecs = (m + FEDCHAIN_LANES - 1) / FEDCHAIN_LANES * 2; /* whole lanes, zero-padded */
        for (int i = 0; i < k; i++) {
            fedchain_v4d *w = wide + (size_t)i * FEDCHAIN_VECS;
            const float *x = rows[i] + start;
            for (size_t v = 0; v < vecs; v++) {
                fedchain_v4f f = {0.0f, 0.0f, 0.0f, 0.0f};
                if (4 * v + 4 <= m) {
                    memcpy(&f, x + 4 * v, sizeof f);
                } else {
                    for (size_t q = 0; 4 * v + q < m; q++) f[q] = x[4 * v + q];
                }
                w[v] = __builtin_convertvector(f, fedchain_v4d);
            }
        }
        for (int i = 0; i < k; i++) {
            const fedchain_v4d *a = wide + (size_t)i * FEDCHAIN_VECS;
            int j = i;
            for (; j + 4 <= k; j += 4) {
                const fedchain_v4d *b0 = wide + (size_t)j * FEDCHAIN_VECS, *b1 = b0 + FEDCHAIN_VECS,
                                   *b2 = b1 + FEDCHAIN_VECS, *b3 = b2 + FEDCHAIN_VECS;
                fedchain_v4d *p = acc + ((size_t)i * k + j) * 2;
                fedchain_v4d s00 = p[0], s01 = p[1], s10 = p[2], s11 = p[3];
                fedchain_v4d s20 = p[4], s21 = p[5], s30 = p[6], s31 = p[7];
                for (size_t v = 0; v < vecs; v += 2) {
                    fedchain_v4d a0 = a[v], a1 = a[v + 1];
                    s00 += a0 * b0[v], s01 += a1 * b0[v + 1];
                    s10 += a0 * b1[v], s11 += a1 * b1[v + 1];
                    s20 += a0 * b2[v], s21 += a1 * b2[v + 1];
                    s30 += a0 * b3[v], s31 += a1 * b3[v + 1];
                }
                p[0] = s00, p[1] = s01, p[2] = s10, p[3] = s11, p[4] = s20, p[5] = s21, p[6] = s30, p[7] = s31;
            }
            for (; j < k; j++) {
                const fedchain_v4d *b = wide + (size_t)j * FEDCHAIN_VECS;
                fedchain_v4d *p = acc + ((size_t)i * k + j) * 2;
                fedchain_v4d s0 = p[0], s1 = p[1];
                for (size_t v = 0; v < vecs; v += 2) s0 += a[v] * b[v], s1 += a[v + 1] * b[v + 1];
                p[0] = s0, p[1] = s1;
            }
        }
    }
    for (int i = 0; i < k; i++)
        for (int j = i; j < k; j++) {
            const fedchain_v4d *p = acc + ((size_t)i * k + j) * 2;
            double total = 0.0;
            for (int q = 0; q < 4; q++) total += p[0][q];
            for (int q = 0; q < 4; q++) total += p[1][q];
            gram[(size_t)i * k + j] += total;
        }
    free(acc);
    free(wide);
    return 0;
}
