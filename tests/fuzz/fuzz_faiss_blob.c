/* Fuzz target: dml__faiss_deserialize, which reads the FAISS index inside a saved gallery.
 * Built only when dml has the FAISS backend. A valid blob passes its CRC-32 and reaches FAISS's
 * own reader; anything else must come back as an error.
 * Seed corpus: run once with DML_FUZZ_FAISS_SEEDS=DIR set and the target writes small valid
 * blobs (Flat, HNSW, IVF-Flat, IVF-PQ) into DIR, made by the FAISS it is linked with. */
#include <stdio.h>
#include <stdlib.h>

#include <dml/dml.h>

#include "index/faiss_backend.h"

static void write_seed(const char *dir, const char *name, const char *factory, int ip) {
  enum { D = 8, N = 300 };
  static float x[N * D];
  for (int i = 0; i < N * D; i++) x[i] = dml_rng_normal(1, 0, (uint64_t)i);
  dml__faiss *f = NULL;
  uint8_t *blob = NULL;
  size_t len = 0;
  if (dml__faiss_create(factory, D, ip, &f) != DML_OK ||
      (!dml__faiss_is_trained(f) && dml__faiss_train(f, x, N) != DML_OK) ||
      dml__faiss_add(f, x, 20) != DML_OK || dml__faiss_serialize(f, &blob, &len) != DML_OK) {
    fprintf(stderr, "seed %s: %s\n", factory, dml_last_error());
  } else {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *out = fopen(path, "wb");
    if (out) {
      fwrite(blob, 1, len, out);
      fclose(out);
    }
  }
  free(blob);
  dml__faiss_free(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *dir = getenv("DML_FUZZ_FAISS_SEEDS");
  if (dir && *dir) {
    write_seed(dir, "flat", "Flat", 0);
    write_seed(dir, "hnsw", "HNSW4", 1);
    write_seed(dir, "ivf_flat", "IVF4,Flat", 0);
    write_seed(dir, "ivf_pq", "IVF4,PQ4x4", 0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dml__faiss *f = NULL;
  if (dml__faiss_deserialize(data, size, &f) != DML_OK) return 0;
  /* what reads must write back */
  uint8_t *blob = NULL;
  size_t len = 0;
  if (dml__faiss_serialize(f, &blob, &len) == DML_OK) free(blob);
  dml__faiss_free(f);
  return 0;
}
