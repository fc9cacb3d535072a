/* cuBLAS fp32 products at the shapes gkd's training step makes, timed one by one on the GPU: the default
 * algorithm of cublasSgemm (what core/tensor/backend_cuda.cu calls) against every algorithm cuBLASLt's
 * heuristic offers for the same product. A diagnostic run by hand on a GPU machine, not part of the build:
 *   nvcc -O2 -o cublas_shapes tools/cublas_shapes.cu -lcublas -lcublasLt && ./cublas_shapes
 * Shapes are gkd's row-major (M, N, K, trans_a, trans_b); the call is the backend's: cuBLAS gets B first,
 * A second, (N, M, K). Prints one line per shape: ms of the default, ms of Lt's best, and Lt's ranks. */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shape {
    int M, N, K, ta, tb;
    const char *what;
};

static float time_ms(cudaEvent_t a, cudaEvent_t b) {
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    return ms;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    const shape shapes[] = {
        {16384, 2304, 768, 0, 1, "qkv forward"},
        {16384, 4096, 768, 0, 1, "gate/up forward"},
        {16384, 768, 2048, 0, 1, "down forward"},
        {16384, 768, 768, 0, 1, "out-proj forward"},
        {16384, 768, 2304, 0, 0, "qkv backward (dx)"},
        {2304, 768, 16384, 1, 0, "qkv backward (dW)"},
        {2048, 32768, 768, 0, 1, "LM head, 2048-row chunk"},
        {64, 32768, 768, 0, 1, "LM head, 64-row chunk"},
        {8192, 8192, 8192, 0, 0, "square 8192"},
    };
    cublasHandle_t h;
    cublasLtHandle_t lt;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS || cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "no cuBLAS\n");
        return 1;
    }
    size_t ws_bytes = (size_t)64 << 20;
    void *ws;
    cudaMalloc(&ws, ws_bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    printf("%-26s %6s %6s %6s %3s %10s %9s %10s %9s %s\n", "shape", "M", "N", "K", "t", "sgemm ms", "TFLOP/s",
           "Lt best ms", "TFLOP/s", "Lt algorithms (ms, heuristic order)");
    for (const shape &s : shapes) {
        size_t na = (size_t)s.M * s.K, nb = (size_t)s.K * s.N, nc = (size_t)s.M * s.N;
        float *a, *b, *c;
        cudaMalloc(&a, na * 4);
        cudaMalloc(&b, nb * 4);
        cudaMalloc(&c, nc * 4);
        cudaMemset(a, 0, na * 4);
        cudaMemset(b, 0, nb * 4);
        int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
        cublasOperation_t oa = s.ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = s.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
        float one = 1, zero = 0;
        double flops = 2.0 * s.M * s.N * s.K;
        for (int i = 0; i < 3; i++)
            cublasSgemm(h, ob, oa, s.N, s.M, s.K, &one, b, ldb, a, lda, &zero, c, ldc);
        cudaEventRecord(e0);
        for (int i = 0; i < reps; i++)
            cublasSgemm(h, ob, oa, s.N, s.M, s.K, &one, b, ldb, a, lda, &zero, c, ldc);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float base = time_ms(e0, e1) / reps;

        cublasLtMatmulDesc_t op;
        cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ob, sizeof ob);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &oa, sizeof oa);
        cublasLtMatrixLayout_t la, lb, lc;
        /* column-major views: the first operand is B (N x K after op), the second A (K x M after op) */
        cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, s.tb ? s.K : s.N, s.tb ? s.N : s.K, ldb);
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, s.ta ? s.M : s.K, s.ta ? s.K : s.M, lda);
        cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, s.N, s.M, ldc);
        cublasLtMatmulPreference_t pref;
        cublasLtMatmulPreferenceCreate(&pref);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                             sizeof ws_bytes);
        cublasLtMatmulHeuristicResult_t res[8];
        int got = 0;
        cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 8, res, &got);
        float best = 1e30f;
        char list[256] = "";
        for (int r = 0; r < got; r++) {
            if (res[r].state != CUBLAS_STATUS_SUCCESS) continue;
            for (int i = 0; i < 2; i++)
                cublasLtMatmul(lt, op, &one, b, la, a, lb, &zero, c, lc, c, lc, &res[r].algo, ws, ws_bytes,
                               0);
            cudaEventRecord(e0);
            for (int i = 0; i < reps; i++)
                cublasLtMatmul(lt, op, &one, b, la, a, lb, &zero, c, lc, c, lc, &res[r].algo, ws, ws_bytes,
                               0);
            cudaEventRecord(e1);
            cudaEventSynchronize(e1);
            float ms = time_ms(e0, e1) / reps;
            if (ms < best) best = ms;
            char one_s[24];
            snprintf(one_s, sizeof one_s, "%s%.3f", r ? " " : "", ms);
            if (strlen(list) + strlen(one_s) < sizeof list) strcat(list, one_s);
        }
        printf("%-26s %6d %6d %6d %d%d %10.3f %9.1f %10.3f %9.1f %s\n", s.what, s.M, s.N, s.K, s.ta, s.tb,
               base, flops / base / 1e9, best, flops / best / 1e9, list);
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(lc);
        cublasLtMatmulDescDestroy(op);
        cudaFree(a);
        cudaFree(b);
        cudaFree(c);
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e));
        return 1;
    }
    return 0;
}
