/* Minimal test framework: TEST(name) registers a test at load time; ASSERT_* macros print both
 * values with file:line, mark the test failed and return from it. The runner (test_main.c)
 * runs every test whose file matches the suite given on the command line and exits non-zero on
 * any failure. */
#ifndef DML_TEST_H
#define DML_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dml/dml.h"

typedef void (*dml_test_fn)(void);
void dml_test_register(const char *file, const char *name, dml_test_fn fn);
void dml_test_fail(void);
/* Directory holding tests/ (fixtures live under it), set at build time. */
const char *dml_test_data_dir(void);
/* A path under the build's scratch directory for files tests write ("<tmp>/<name>"). */
const char *dml_test_tmp_path(const char *name, char *buf, int buf_size);

#define TEST(name)                                                  \
  static void test_##name(void);                                    \
  __attribute__((constructor)) static void register_##name(void) {  \
    dml_test_register(__FILE__, #name, test_##name);                \
  }                                                                 \
  static void test_##name(void)

#define DML__FAIL_HERE() \
  do {                   \
    dml_test_fail();     \
    return;              \
  } while (0)

#define ASSERT_TRUE(cond)                                                        \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "  %s:%d: ASSERT_TRUE(%s) failed\n", __FILE__, __LINE__, #cond); \
      DML__FAIL_HERE();                                                          \
    }                                                                            \
  } while (0)

#define ASSERT_EQ_INT(a, b)                                                               \
  do {                                                                                    \
    long long dml__a = (long long)(a), dml__b = (long long)(b);                           \
    if (dml__a != dml__b) {                                                               \
      fprintf(stderr, "  %s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, #a, \
              #b, dml__a, dml__b);                                                        \
      DML__FAIL_HERE();                                                                   \
    }                                                                                     \
  } while (0)

#define ASSERT_NEAR(a, b, tol)                                                             \
  do {                                                                                     \
    double dml__a = (double)(a), dml__b = (double)(b), dml__t = (double)(tol);             \
    if (!(fabs(dml__a - dml__b) <= dml__t)) {                                              \
      fprintf(stderr, "  %s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__, __LINE__, \
              #a, #b, dml__t, dml__a, dml__b);                                             \
      DML__FAIL_HERE();                                                                    \
    }                                                                                      \
  } while (0)

/* Expects a status; prints dml_last_error() on mismatch. */
#define ASSERT_STATUS(expr, expected)                                                     \
  do {                                                                                    \
    dml_status dml__s = (expr);                                                           \
    if (dml__s != (expected)) {                                                           \
      fprintf(stderr, "  %s:%d: %s returned %s (%d), expected %s: %s\n", __FILE__,        \
              __LINE__, #expr, dml_status_str(dml__s), (int)dml__s, #expected,            \
              dml_last_error());                                                          \
      DML__FAIL_HERE();                                                                   \
    }                                                                                     \
  } while (0)

#define ASSERT_OK(expr) ASSERT_STATUS(expr, DML_OK)

/* An error status with a non-empty message. */
#define ASSERT_ERROR(expr, expected)                                                  \
  do {                                                                                \
    dml_clear_error();                                                                \
    ASSERT_STATUS(expr, expected);                                                    \
    if (dml_last_error()[0] == '\0') {                                                \
      fprintf(stderr, "  %s:%d: %s failed without a message\n", __FILE__, __LINE__, #expr); \
      DML__FAIL_HERE();                                                               \
    }                                                                                 \
  } while (0)

#endif
