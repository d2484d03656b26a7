/* fedchain's native aggregation kernel: FedAvg's running mean in one pass over the rows.
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
#include <string.h>

#define FEDCHAIN_BLOCK 2048 /* floats of out kept in L1 (8 KiB) */

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
/* One build for every x86-64 CPU: an AVX2+FMA clone chosen at load time, and a baseline one. */
#define FEDCHAIN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FEDCHAIN_CLONES
#endif

int fedchain_native_abi(void) { return 1; }

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
