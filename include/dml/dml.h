/* libdml: deep metric learning toolkit. Include this header for the whole public API. */
#ifndef DML_DML_H
#define DML_DML_H

#include "dml/checkpoint.h"
#include "dml/data.h"
#include "dml/distance.h"
#include "dml/eval.h"
#include "dml/graph.h"
#include "dml/index.h"
#include "dml/init.h"
#include "dml/loss.h"
#include "dml/match.h"
#include "dml/miner.h"
#include "dml/nn.h"
#include "dml/npy.h"
#include "dml/ops.h"
#include "dml/optim.h"
#include "dml/params.h"
#include "dml/rng.h"
#include "dml/sampler.h"
#include "dml/status.h"
#include "dml/tensor.h"
#include "dml/threads.h"
#include "dml/viz.h"
#include "dml/train.h"

#define DML_VERSION_STRING "0.1.0"

#endif
