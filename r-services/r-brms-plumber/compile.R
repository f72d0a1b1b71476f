# Compiles and caches the Stan templates of the growth model (one per family)
# under BRMS_TEMPLATE_DIR (default: MODEL_DIR/brms-templates). Run at image
# build so that containers start without compiling:
#   Rscript r-services/r-brms-plumber/compile.R
# The service runs it itself at start when a template is missing.

script_path <- sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1])
service_dir <- normalizePath(dirname(script_path))
code_files <- c(
  sort(list.files(file.path(service_dir, "..", "common", "R"), pattern = "\\.R$", full.names = TRUE)),
  sort(list.files(file.path(service_dir, "R"), pattern = "\\.R$", full.names = TRUE))
)
for (file in code_files) {
  sys.source(file, envir = globalenv())
}
Sys.setenv(R_SERVICE_NAME = "r-brms-plumber")
compiled <- ensure_templates()
log_event("info", "growth templates ready", template_dir = template_dir(), compiled = I(compiled))
