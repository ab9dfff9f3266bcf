/* dml's C interface to FAISS's C++ API (see faiss_backend.h). The only C++ in dml: every entry
 * point is noexcept in effect, each body runs inside one try block whose handlers turn FAISS's
 * exceptions (and std::bad_alloc and the rest) into a dml_status with a message.
 *
 * Serialised form, little-endian, fixed width:
 *   magic "DMLFAISS" | u32 version (1) | u32 metric (0 L2, 1 inner product) | i64 d |
 *   u32 factory length | factory bytes (no NUL) | u64 FAISS blob length | u32 CRC-32 |
 *   FAISS blob (faiss::write_index)
 * The CRC-32 (zlib's) covers everything before it and the whole FAISS blob, so a truncated or
 * bit-flipped blob is refused before FAISS's reader sees it: that reader trusts the lengths it
 * reads and may try to allocate whatever a corrupted length says. */
#include "index/faiss_backend.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPQFastScan.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <type_traits>

extern "C" {
#include "core/status_internal.h"
}

static_assert(std::is_same<faiss::Index::idx_t, int64_t>::value,
              "FAISS's id type must be int64_t: dml passes its id buffers straight through");

struct dml__faiss {
  faiss::Index *index = nullptr;
  std::string factory;
  int inner_product = 0;
  std::string description; /* "<factory> (L2)" or "<factory> (inner product)" */

  ~dml__faiss() { delete index; }
};

namespace {

const char kMagic[8] = {'D', 'M', 'L', 'F', 'A', 'I', 'S', 'S'};
const uint32_t kVersion = 1;
/* A factory string is short ("IVF65536_HNSW32,PQ64x4fsr,RFlat" is long); anything longer in a
 * blob means corruption. */
const uint32_t kMaxFactory = 4096;
/* Largest search-parameter value accepted (see dml__faiss_set_param). */
const int kMaxParam = 1 << 16;
/* magic, version, metric, d, factory length | blob length, CRC */
const size_t kHeadFixed = 8 + 4 + 4 + 8 + 4;
const size_t kTailFixed = 8 + 4;

/* Runs `body` and maps any exception to a status; `what` names the operation for the message. */
template <typename F>
dml_status guarded(const char *what, const dml__faiss *f, dml_status on_faiss_error, F body) {
  const char *desc = f ? f->description.c_str() : "";
  try {
    return body();
  } catch (const std::bad_alloc &) {
    return dml__error(DML_ERR_NO_MEMORY, "FAISS %s%s%s: out of memory", what, *desc ? " on " : "",
                      desc);
  } catch (const faiss::FaissException &e) {
    return dml__error(on_faiss_error, "FAISS %s%s%s failed: %s", what, *desc ? " on " : "", desc,
                      e.what());
  } catch (const std::exception &e) {
    return dml__error(DML_ERR_INTERNAL, "FAISS %s%s%s failed: %s", what, *desc ? " on " : "",
                      desc, e.what());
  } catch (...) {
    return dml__error(DML_ERR_INTERNAL, "FAISS %s%s%s failed with an unknown exception", what,
                      *desc ? " on " : "", desc);
  }
}

dml_status check_finite(const float *x, int64_t count, const char *what) {
  for (int64_t i = 0; i < count; i++)
    if (!std::isfinite(x[i]))
      return dml__error(DML_ERR_NOT_FINITE, "%s: element %lld is not finite (NaN or infinity)",
                        what, (long long)i);
  return DML_OK;
}

/* Validates a [n, d] buffer handed to train/add/search. */
dml_status check_rows(const dml__faiss *f, const float *x, int64_t n, const char *what) {
  if (!f) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: NULL index", what);
  if (n < 0) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: negative count %lld", what, (long long)n);
  if (n > 0 && !x) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: NULL vectors", what);
  const int64_t d = f->index->d;
  if (n > INT64_MAX / d)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: %lld vectors of dimension %lld overflow",
                      what, (long long)n, (long long)d);
  return check_finite(x, n * d, what);
}

int64_t min_train_of(const faiss::Index *ix) {
  if (!ix) return 0;
  if (auto *p = dynamic_cast<const faiss::IndexPreTransform *>(ix)) {
    int64_t m = min_train_of(p->index);
    for (const faiss::VectorTransform *vt : p->chain)
      if (!vt->is_trained) m = std::max<int64_t>(m, 1);
    return m;
  }
  if (auto *r = dynamic_cast<const faiss::IndexRefine *>(ix))
    return std::max(min_train_of(r->base_index), min_train_of(r->refine_index));
  if (auto *h = dynamic_cast<const faiss::IndexHNSW *>(ix)) return min_train_of(h->storage);
  if (auto *ivf = dynamic_cast<const faiss::IndexIVF *>(ix)) {
    /* k-means cannot place nlist centroids with fewer points; the PQ codebooks likewise need
     * ksub = 2^nbits points per sub-quantizer */
    int64_t m = std::max<int64_t>((int64_t)ivf->nlist, min_train_of(ivf->quantizer));
    if (auto *pq = dynamic_cast<const faiss::IndexIVFPQ *>(ix))
      m = std::max<int64_t>(m, (int64_t)pq->pq.ksub);
    if (auto *pqfs = dynamic_cast<const faiss::IndexIVFPQFastScan *>(ix))
      m = std::max<int64_t>(m, (int64_t)pqfs->pq.ksub);
    if (m == 0 && !ix->is_trained) m = 1;
    return m;
  }
  if (auto *pq = dynamic_cast<const faiss::IndexPQ *>(ix)) return (int64_t)pq->pq.ksub;
  if (auto *pqfs = dynamic_cast<const faiss::IndexPQFastScan *>(ix))
    return (int64_t)pqfs->pq.ksub;
  /* scalar quantisers, LSH, ...: any number of points will do */
  return ix->is_trained ? 0 : 1;
}

std::string describe(const std::string &factory, int inner_product) {
  return factory + (inner_product ? " (inner product)" : " (L2)");
}

void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
uint32_t get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* zlib's crc32 takes uInt lengths: feed it in pieces. */
uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
  uLong c = crc;
  while (n > 0) {
    const uInt piece = (uInt)std::min<size_t>(n, 1u << 30);
    c = crc32(c, p, piece);
    p += piece;
    n -= piece;
  }
  return (uint32_t)c;
}

} // namespace

extern "C" {

dml_status dml__faiss_create(const char *factory, int64_t d, int inner_product,
                             dml__faiss **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml__faiss_create: NULL output");
  *out = nullptr;
  if (!factory || !*factory)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "FAISS index: empty factory string (try \"HNSW32\" or \"IVF1024,Flat\")");
  if (std::strlen(factory) > kMaxFactory)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS index: factory string longer than %u bytes",
                      (unsigned)kMaxFactory);
  if (d <= 0 || d > INT_MAX)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS index \"%s\": dimension %lld out of range",
                      factory, (long long)d);
  if (inner_product != 0 && inner_product != 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS index \"%s\": inner_product must be 0 or 1",
                      factory);
  return guarded("index factory", nullptr, DML_ERR_INVALID_ARGUMENT, [&]() -> dml_status {
    std::unique_ptr<dml__faiss> f(new dml__faiss);
    f->factory = factory;
    f->inner_product = inner_product;
    f->description = describe(f->factory, inner_product);
    try {
      f->index = faiss::index_factory((int)d, factory,
                                      inner_product ? faiss::METRIC_INNER_PRODUCT
                                                    : faiss::METRIC_L2);
    } catch (const faiss::FaissException &e) {
      return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS index factory string \"%s\" rejected: %s",
                        factory, e.what());
    }
    if (!f->index)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS index factory string \"%s\" rejected",
                        factory);
    /* FAISS's factory turns on polysemous training for PQ codes: it reorders the codebooks so
     * that Hamming distances between codes mimic real ones, which only the "ht" search
     * parameter uses, and it costs minutes where k-means costs seconds. */
    if (auto *ivfpq = dynamic_cast<faiss::IndexIVFPQ *>(f->index))
      ivfpq->do_polysemous_training = false;
    if (auto *pq = dynamic_cast<faiss::IndexPQ *>(f->index)) pq->do_polysemous_training = false;
    *out = f.release();
    return DML_OK;
  });
}

void dml__faiss_free(dml__faiss *f) { delete f; }

int64_t dml__faiss_dim(const dml__faiss *f) { return f ? (int64_t)f->index->d : 0; }

int dml__faiss_inner_product(const dml__faiss *f) { return f ? f->inner_product : 0; }

int dml__faiss_is_trained(const dml__faiss *f) { return f && f->index->is_trained ? 1 : 0; }

int64_t dml__faiss_min_train(const dml__faiss *f) {
  if (!f) return 0;
  try {
    return min_train_of(f->index);
  } catch (...) {
    return 1;
  }
}

dml_status dml__faiss_train(dml__faiss *f, const float *x, int64_t n) {
  DML_TRY(check_rows(f, x, n, "FAISS train"));
  /* retraining would move the centroids the stored codes were made against */
  if (f->index->ntotal > 0)
    return dml__error(DML_ERR_STATE,
                      "FAISS index %s holds %lld vectors: reset it before training again",
                      f->description.c_str(), (long long)f->index->ntotal);
  const int64_t need = dml__faiss_min_train(f);
  if (n < need || n == 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "FAISS index %s needs at least %lld training vectors, got %lld",
                      f->description.c_str(), (long long)std::max<int64_t>(need, 1), (long long)n);
  return guarded("train", f, DML_ERR_INVALID_ARGUMENT, [&]() -> dml_status {
    f->index->train(n, x);
    return DML_OK;
  });
}

dml_status dml__faiss_add(dml__faiss *f, const float *x, int64_t n) {
  DML_TRY(check_rows(f, x, n, "FAISS add"));
  if (!f->index->is_trained)
    return dml__error(DML_ERR_STATE,
                      "FAISS index %s must be trained before vectors are added (with at least "
                      "%lld vectors)",
                      f->description.c_str(), (long long)dml__faiss_min_train(f));
  if (n == 0) return DML_OK;
  return guarded("add", f, DML_ERR_INVALID_ARGUMENT, [&]() -> dml_status {
    f->index->add(n, x);
    return DML_OK;
  });
}

dml_status dml__faiss_reset(dml__faiss *f) {
  if (!f) return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS reset: NULL index");
  return guarded("reset", f, DML_ERR_UNSUPPORTED, [&]() -> dml_status {
    f->index->reset();
    return DML_OK;
  });
}

int64_t dml__faiss_ntotal(const dml__faiss *f) { return f ? (int64_t)f->index->ntotal : 0; }

dml_status dml__faiss_search(const dml__faiss *f, const float *q, int64_t nq, int64_t k,
                             float *dists, int64_t *ids) {
  DML_TRY(check_rows(f, q, nq, "FAISS search"));
  if (k <= 0) return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS search: k = %lld, must be > 0",
                                (long long)k);
  if (nq > 0 && (!dists || !ids))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS search: NULL output buffer");
  if (nq > INT64_MAX / k)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS search: nq * k overflows");
  if (!f->index->is_trained)
    return dml__error(DML_ERR_STATE, "FAISS index %s is not trained yet",
                      f->description.c_str());
  if (nq == 0) return DML_OK;
  return guarded("search", f, DML_ERR_INVALID_ARGUMENT, [&]() -> dml_status {
    f->index->search(nq, q, k, dists, ids);
    return DML_OK;
  });
}

dml_status dml__faiss_set_param(dml__faiss *f, const char *name, double value) {
  if (!f) return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS set_param: NULL index");
  if (!name || !*name)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS set_param: empty parameter name");
  /* FAISS stores most parameters as int and converts without a check; and a parameter can
   * come from a gallery file, so sizes that would make every search allocate gigabytes are
   * refused too (efSearch, nprobe and k_factor well beyond any useful setting). */
  if (!std::isfinite(value) || value < 0 || value > (double)kMaxParam)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "FAISS parameter %s = %g out of range (0 .. %d)", name, value, kMaxParam);
  return guarded("set_param", f, DML_ERR_INVALID_ARGUMENT, [&]() -> dml_status {
    faiss::ParameterSpace ps;
    ps.set_index_parameter(f->index, name, value);
    return DML_OK;
  });
}

dml_status dml__faiss_serialize(const dml__faiss *f, uint8_t **buf, size_t *len) {
  if (!f || !buf || !len)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS serialise: NULL argument");
  *buf = nullptr;
  *len = 0;
  return guarded("serialise", f, DML_ERR_UNSUPPORTED, [&]() -> dml_status {
    faiss::VectorIOWriter w;
    faiss::write_index(f->index, &w);
    const size_t flen = f->factory.size();
    const size_t blen = w.data.size();
    const size_t total = kHeadFixed + flen + kTailFixed + blen;
    uint8_t *out = (uint8_t *)std::malloc(total);
    if (!out)
      return dml__error(DML_ERR_NO_MEMORY, "FAISS serialise: cannot allocate %zu bytes", total);
    uint8_t *p = out;
    std::memcpy(p, kMagic, 8);
    put_u32(p + 8, kVersion);
    put_u32(p + 12, (uint32_t)f->inner_product);
    put_u64(p + 16, (uint64_t)f->index->d);
    put_u32(p + 24, (uint32_t)flen);
    p += kHeadFixed;
    std::memcpy(p, f->factory.data(), flen);
    p += flen;
    put_u64(p, (uint64_t)blen);
    p += 8;
    uint32_t crc = crc_update(0, out, (size_t)(p - out));
    crc = crc_update(crc, w.data.data(), blen);
    put_u32(p, crc);
    p += 4;
    if (blen) std::memcpy(p, w.data.data(), blen);
    *buf = out;
    *len = total;
    return DML_OK;
  });
}

dml_status dml__faiss_deserialize(const uint8_t *buf, size_t len, dml__faiss **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS deserialise: NULL output");
  *out = nullptr;
  if (!buf && len > 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "FAISS deserialise: NULL buffer");
  if (len < kHeadFixed + kTailFixed)
    return dml__error(DML_ERR_FORMAT,
                      "FAISS index blob truncated: %zu bytes, the header alone takes %zu", len,
                      kHeadFixed + kTailFixed);
  if (std::memcmp(buf, kMagic, 8) != 0)
    return dml__error(DML_ERR_FORMAT, "not a dml FAISS index blob (wrong magic)");
  const uint32_t version = get_u32(buf + 8);
  if (version != kVersion)
    return dml__error(DML_ERR_UNSUPPORTED,
                      "FAISS index blob version %u; this dml reads version %u (rebuild the index)",
                      (unsigned)version, (unsigned)kVersion);
  const uint32_t metric = get_u32(buf + 12);
  const uint64_t d = get_u64(buf + 16);
  const uint32_t flen = get_u32(buf + 24);
  if (metric > 1)
    return dml__error(DML_ERR_FORMAT, "FAISS index blob: unknown metric %u", (unsigned)metric);
  if (d == 0 || d > (uint64_t)INT_MAX)
    return dml__error(DML_ERR_FORMAT, "FAISS index blob: dimension %llu out of range",
                      (unsigned long long)d);
  if (flen == 0 || flen > kMaxFactory)
    return dml__error(DML_ERR_FORMAT, "FAISS index blob: factory string length %u out of range",
                      (unsigned)flen);
  if (len - kHeadFixed < (size_t)flen + kTailFixed)
    return dml__error(DML_ERR_FORMAT, "FAISS index blob truncated in its header (%zu bytes)",
                      len);
  const uint8_t *p = buf + kHeadFixed;
  const std::string factory((const char *)p, flen);
  if (factory.find('\0') != std::string::npos)
    return dml__error(DML_ERR_FORMAT, "FAISS index blob: factory string contains a NUL byte");
  p += flen;
  const uint64_t blen = get_u64(p);
  const uint32_t crc_stored = get_u32(p + 8);
  const size_t head = kHeadFixed + flen + kTailFixed;
  if (blen != (uint64_t)(len - head))
    return dml__error(DML_ERR_FORMAT,
                      "FAISS index blob %s: the header announces %llu bytes of index, %zu follow",
                      blen > (uint64_t)(len - head) ? "truncated" : "has trailing bytes",
                      (unsigned long long)blen, len - head);
  uint32_t crc = crc_update(0, buf, head - 4);
  crc = crc_update(crc, buf + head, (size_t)blen);
  if (crc != crc_stored)
    return dml__error(DML_ERR_FORMAT,
                      "FAISS index blob corrupted: CRC-32 %08x, the header says %08x",
                      (unsigned)crc, (unsigned)crc_stored);
  return guarded("deserialise", nullptr, DML_ERR_FORMAT, [&]() -> dml_status {
    std::unique_ptr<dml__faiss> f(new dml__faiss);
    f->factory = factory;
    f->inner_product = (int)metric;
    f->description = describe(factory, (int)metric);
    {
      faiss::VectorIOReader r;
      r.data.assign(buf + head, buf + len);
      try {
        f->index = faiss::read_index(&r);
      } catch (const faiss::FaissException &e) {
        return dml__error(DML_ERR_FORMAT, "FAISS index blob for %s unreadable: %s",
                          f->description.c_str(), e.what());
      }
    }
    if (!f->index)
      return dml__error(DML_ERR_FORMAT, "FAISS index blob for %s unreadable",
                        f->description.c_str());
    const faiss::MetricType want = metric ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;
    if ((uint64_t)f->index->d != d || f->index->metric_type != want || f->index->ntotal < 0)
      return dml__error(DML_ERR_FORMAT,
                        "FAISS index blob inconsistent: header says %s of dimension %llu, the "
                        "index has dimension %lld",
                        f->description.c_str(), (unsigned long long)d,
                        (long long)f->index->d);
    *out = f.release();
    return DML_OK;
  });
}

const char *dml__faiss_description(const dml__faiss *f) {
  return f ? f->description.c_str() : "";
}

} /* extern "C" */
