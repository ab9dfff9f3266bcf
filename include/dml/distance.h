/* Distances between embeddings, shared by losses, search and evaluation. */
#ifndef DML_DISTANCE_H
#define DML_DISTANCE_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dml_distance {
  DML_DIST_EUCLIDEAN,         /* ||a - b|| */
  DML_DIST_SQUARED_EUCLIDEAN, /* ||a - b||^2 */
  DML_DIST_COSINE,            /* similarity a.b / (||a|| ||b||) (larger = closer) */
  DML_DIST_DOT                /* similarity a.b (larger = closer) */
} dml_distance;

/* 1 when larger values mean closer (cosine, dot). */
int dml_distance_is_similarity(dml_distance d);

#ifdef __cplusplus
}
#endif
#endif
