/* The element-wise and attention work of one batch-1 decode step, between the GEMMs that torch runs.
 *
 * At batch 1 a Llama layer is four GEMMs (fused q/k/v, o, fused gate/up, down) and ~40 small torch ops
 * around them (norms, RoPE, KV-cache writes, attention over the cache, SiLU): each op costs microseconds of
 * dispatch for nanoseconds of arithmetic. These three functions do that work in three calls per layer.
 * fp32 throughout; a bf16 KV cache is read and written as bf16 (round to nearest even, as torch's .to()).
 * Single-threaded; no allocation; callers (compactlm/serving/engine/native/__init__.py) check shapes.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* out[i] = x[i] / sqrt(mean(x^2) + eps)  (RMSNorm without its weight: the decoder folds the weight into the
   next GEMM; Zhang & Sennrich 2019, as torch.nn.functional.rms_norm with weight=None) */
void compactlm_rms_norm(const float *x, int64_t n, float eps, float *out) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += x[i] * x[i];
    const float r = 1.0f / sqrtf(sum / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * r;
}

/* out[i] = silu(gu[i]) * gu[inter + i]  (SwiGLU on the fused gate/up output) */
void compactlm_silu_mul(const float *gu, int64_t inter, float *out) {
    for (int64_t i = 0; i < inter; i++) {
        const float g = gu[i];
        out[i] = g / (1.0f + expf(-g)) * gu[inter + i];
    }
}

static inline float bf16_load(const uint16_t *p) {
    uint32_t bits = (uint32_t)*p << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t bf16_round(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u); /* NaN stays NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

/* One token of one sequence through attention, from the fused projection's output to the attention output.
 *
 * qkv: [heads*dim | kv_heads*dim | kv_heads*dim] (q, k, v before RoPE); cos/sin: this position's rows of the
 * RoPE tables, [(heads + kv_heads) * dim], sin with rotate_half's minus folded into each head's first half
 * (rope(x)[i] = x[i] cos[i] + x[i +- half] sin[i]); k_cache/v_cache: this layer's cache row 0,
 * [kv_heads, cache_len, dim], fp32 or bf16; writes k and v at `pos`, then for each query head attends to
 * positions 0..pos of its KV head (grouped-query attention: heads / kv_heads query heads per KV head) with
 * `scale` on the scores and a softmax (Vaswani et al. 2017). out: [heads*dim]; scores: pos+1 floats of scratch.
 */
void compactlm_attention_step(const float *qkv, int64_t heads, int64_t kv_heads, int64_t dim, const float *cos,
                              const float *sin, void *k_cache, void *v_cache, int64_t cache_len, int64_t pos,
                              int bf16, float scale, float *q_rot, float *scores, float *out) {
    const int64_t half = dim / 2, groups = heads / kv_heads, length = pos + 1;
    /* RoPE on q (into q_rot) and k (into q_rot after q), then k and v into the cache */
    for (int64_t h = 0; h < heads + kv_heads; h++) {
        const float *x = qkv + h * dim, *c = cos + h * dim, *s = sin + h * dim;
        float *y = q_rot + h * dim;
        for (int64_t i = 0; i < half; i++) {
            y[i] = x[i] * c[i] + x[i + half] * s[i];
            y[i + half] = x[i + half] * c[i + half] + x[i] * s[i + half];
        }
    }
    const float *k_new = q_rot + heads * dim, *v_new = qkv + (heads + kv_heads) * dim;
    for (int64_t h = 0; h < kv_heads; h++) {
        const int64_t at = (h * cache_len + pos) * dim;
        if (bf16) {
            uint16_t *kc = (uint16_t *)k_cache + at, *vc = (uint16_t *)v_cache + at;
            for (int64_t i = 0; i < dim; i++) {
                kc[i] = bf16_round(k_new[h * dim + i]);
                vc[i] = bf16_round(v_new[h * dim + i]);
            }
        } else {
            memcpy((float *)k_cache + at, k_new + h * dim, (size_t)dim * sizeof(float));
            memcpy((float *)v_cache + at, v_new + h * dim, (size_t)dim * sizeof(float));
        }
    }
    for (int64_t j = 0; j < heads; j++) {
        const int64_t h = j / groups;
        const float *q = q_rot + j * dim;
        float top = -FLT_MAX;
        for (int64_t t = 0; t < length; t++) {
            float dot = 0.0f;
            if (bf16) {
                const uint16_t *k = (const uint16_t *)k_cache + (h * cache_len + t) * dim;
                for (int64_t i = 0; i < dim; i++) dot += q[i] * bf16_load(k + i);
            } else {
                const float *k = (const float *)k_cache + (h * cache_len + t) * dim;
                for (int64_t i = 0; i < dim; i++) dot += q[i] * k[i];
            }
            scores[t] = dot * scale;
            top = scores[t] > top ? scores[t] : top;
        }
        float total = 0.0f;
        for (int64_t t = 0; t < length; t++) {
            scores[t] = expf(scores[t] - top);
            total += scores[t];
        }
        float *o = out + j * dim;
        for (int64_t i = 0; i < dim; i++) o[i] = 0.0f;
        for (int64_t t = 0; t < length; t++) {
            const float p = scores[t] / total;
            if (bf16) {
                const uint16_t *v = (const uint16_t *)v_cache + (h * cache_len + t) * dim;
                for (int64_t i = 0; i < dim; i++) o[i] += p * bf16_load(v + i);
            } else {
                const float *v = (const float *)v_cache + (h * cache_len + t) * dim;
                for (int64_t i = 0; i < dim; i++) o[i] += p * v[i];
            }
        }
    }
}
