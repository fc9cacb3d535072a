/* Token-level divergences between the teacher distribution P and the student distribution Q at one
 * output position, over rows of many positions: the value and its analytic gradient with respect to
 * the student logits. The math, the JSD endpoint conventions and the numerics are in
 * docs/divergences.md; DESIGN.md section 2 fixes the conventions.
 * Rules:
 * - P = softmax(teacher / teacher_temperature), Q = softmax(student): the student side is always at
 *   temperature 1 (a student temperature is the caller's scaling of its own logits).
 * - A logit of -inf masks its entry (probability 0, 0 log 0 = 0). A divergence that is infinite
 *   (forward KL where P > 0 = Q, reverse KL where Q > 0 = P) has value +inf; forward KL's gradient
 *   stays finite (Q - P), reverse KL's is infinite and refused. The gradient at a masked student
 *   logit is 0. NaN and +inf logits are errors, as is a row whose logits are all -inf.
 * - Values and gradients are accumulated in double per row; dstudent is overwritten, not accumulated,
 *   and holds grad_scale[n] * dD(row n)/dstudent. Values are never scaled.
 * - Rows are independent and computed in parallel (OpenMP); results do not depend on the thread
 *   count. */
#ifndef GKD_DIVERGENCE_H
#define GKD_DIVERGENCE_H

#include "core/base/error.h"

typedef enum {
    GKD_DIV_FORWARD_KL,      /* KL(P||Q) */
    GKD_DIV_REVERSE_KL,      /* KL(Q||P) */
    GKD_DIV_JSD,             /* beta KL(P||M) + (1-beta) KL(Q||M), M = beta P + (1-beta) Q */
    GKD_DIV_TV,              /* 0.5 sum |P - Q| */
    GKD_DIV_SKEW_KL,         /* KL(P || skew P + (1-skew) Q) */
    GKD_DIV_SKEW_REVERSE_KL, /* KL(Q || skew Q + (1-skew) P) */
} gkd_divergence_kind;

/* What GKD_DIV_JSD means at beta = 0 and beta = 1 (docs/divergences.md). */
typedef enum {
    GKD_JSD_PAPER,  /* the formula as is: 0 at both ends */
    GKD_JSD_TRL,    /* forward KL at beta = 0, reverse KL at beta = 1, the formula in between */
    GKD_JSD_SCALED, /* JSD(beta) / (beta (1-beta)): continuous, forward KL at 0, reverse KL at 1 */
} gkd_jsd_convention;

/* How the rows are computed (rl/divergence_fast.h). */
typedef enum {
    GKD_DIV_EXACT = 0,   /* double per entry, cancellation-free forms: the reference */
    GKD_DIV_FLOAT32 = 1, /* float32 SIMD per entry, double per row; within 1e-5 relative of the exact path */
} gkd_div_precision;

typedef struct {
    gkd_divergence_kind kind;
    double beta;                   /* JSD only, in [0, 1] */
    gkd_jsd_convention convention; /* JSD only */
    double skew;                   /* skew KL and skew reverse KL only, in [0, 1] */
    double teacher_temperature;    /* > 0 */
    /* 0: exact. k > 0: the divergence between the distributions coarsened to the top-k entries (the
     * teacher's for forward and skew KL, the student's for reverse and skew reverse KL, the union of
     * both for JSD and TV) plus one tail bucket holding the rest of each distribution's mass. A k of
     * V or more keeps every entry. */
    int top_k;
    /* GKD_DIV_EXACT (0, the default of a zeroed struct and of parse) or GKD_DIV_FLOAT32. The float path
     * covers rows with finite logits and top_k 0; other rows take the exact path. CUDA's device rows are
     * double whatever this says. */
    gkd_div_precision precision;
} gkd_divergence;

/* Per-position numbers logged whatever the training divergence (exact, no top-k). */
typedef struct {
    double forward_kl;      /* KL(P||Q) */
    double reverse_kl;      /* KL(Q||P) */
    double jsd;             /* the paper's JSD(0.5) */
    double teacher_entropy; /* H(P), P at the teacher temperature */
    double student_entropy; /* H(Q) */
} gkd_token_metrics;

/* Fills *out from a name: "forward_kl", "reverse_kl", "jsd" (= "jsd_paper"), "jsd_trl", "jsd_scaled",
 * "tv", "skew_kl", "skew_reverse_kl". Defaults: beta 0.5, skew 0.1 (DistiLLM's), teacher temperature
 * 1, top_k 0. An unknown name is GKD_ERR_ARG with a message listing the valid ones. */
gkd_status gkd_divergence_parse(const char *name, gkd_divergence *out);

/* The canonical name parse() accepts for d's kind and convention (a static string). */
const char *gkd_divergence_name(const gkd_divergence *d);

/* The divergence's one scalar setting, the one a run's "beta" schedule drives: beta for JSD, skew for
 * the other kinds (the skew KLs read it; the rest ignore it, and report their unused skew). */
double gkd_divergence_param(const gkd_divergence *d);
/* Sets what gkd_divergence_param reads, for the kinds that use it: beta for JSD, skew for the skew KLs;
 * the other kinds are left as they are. */
void gkd_divergence_set_param(gkd_divergence *d, double value);
/* The name of the setting d's kind reads ("beta" for JSD, "skew" for the skew KLs), NULL for the kinds
 * that read none. */
const char *gkd_divergence_param_name(const gkd_divergence *d);

/* GKD_ERR_ARG, naming the field, unless kind and convention are known, beta and skew lie in [0, 1],
 * the teacher temperature is finite and > 0, and top_k >= 0. */
gkd_status gkd_divergence_check(const gkd_divergence *d);

/* N positions of V logits each. value[n] = D(P_n || Q_n) (value may be NULL). dstudent (may be NULL)
 * receives grad_scale[n] * dD/dstudent[n, :] (grad_scale NULL means 1). Fails with GKD_ERR_ARG on a bad
 * setting or logit, and when a gradient that is asked for (grad_scale[n] != 0) is infinite (reverse-KL
 * kinds where Q > 0 = P); GKD_ERR_NOMEM if per-thread scratch (~5V doubles per thread, allocated per
 * call) cannot be had. The error names the first failing row; the other rows' outputs are still
 * written, a row with bad logits gets value NaN and a zero gradient. */
gkd_status gkd_divergence_rows(const gkd_divergence *d,
                               const float *teacher, /* (N,V) */
                               const float *student, /* (N,V) */
                               int N, int V,
                               double *value,          /* (N) or NULL */
                               float *dstudent,        /* (N,V) or NULL */
                               const float *grad_scale /* (N) or NULL */);

/* gkd_divergence_rows plus, when metrics (N) is not NULL, the logged metrics of each row (exact whatever
 * top_k, P at d's teacher temperature; NaN on a row with bad logits), in one pass: both log-softmaxes are
 * taken once, and the terms the metrics share with d (forward KL, reverse KL, the mixture at beta 0.5)
 * are computed once. value, dstudent and metrics are what the separate calls give, bit for bit. */
gkd_status gkd_divergence_rows_ex(const gkd_divergence *d,
                                  const float *teacher, /* (N,V) */
                                  const float *student, /* (N,V) */
                                  int N, int V,
                                  double *value,           /* (N) or NULL */
                                  float *dstudent,         /* (N,V) or NULL */
                                  const float *grad_scale, /* (N) or NULL */
                                  gkd_token_metrics *metrics /* (N) or NULL */);

/* The logged metrics of N positions, exact, with P at teacher_temperature. */
gkd_status gkd_divergence_metrics(const float *teacher, /* (N,V) */
                                  const float *student, /* (N,V) */
                                  int N, int V, double teacher_temperature,
                                  gkd_token_metrics *out /* (N) */);

#endif
