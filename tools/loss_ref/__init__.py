"""PyTorch implementations of dml's losses and miners, written directly from the formulas of
docs/losses.md. One module per family; each exports LOSSES = {name: (fn, make_params)} with
fn(emb, labels, params, ref, **opts) -> scalar and make_params(dim, num_classes, generator) ->
dict of parameter tensors (or None). Vectorised and dtype-agnostic: float64 for the fixtures
(tools/fixtures/losses_*.py), float32 for the PyTorch side of bench/losses."""
