"""A small, deterministic, multi-modal demo cohort that histo makes itself (no downloaded data).

- `slide`: paints H&E-like slides whose tissue shows two latent factors (tumour, microenvironment);
  `fields` and `nuclei` are its vectorised building blocks (random fields, stamped nuclei).
- `tiff`: writes a painted slide as a pyramidal tiled TIFF that OpenSlide reads; `render` is the
  picklable per-slide job (paint + write) that the stage runs in worker processes.
- `cohort`: the latent factors and the tables they drive (labels, survival, omics, gene sets).
The `synthesize` stage (histo.plugins.stages.synthesize) puts them together; docs/demo-data.md
describes what is generated.
"""
