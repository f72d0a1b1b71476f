# Compiles and caches the Stan templates of the growth model (one per family)
# under BRMS_TEMPLATE_DIR (default: MODEL_DIR/brms-templates). Run at image
# build so that containers start without compiling:
#   Rscript r-services/r-brms-plumber/compile.R
# The service runs it itself at start when a template is missing.

script_path <- sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1])
service_dir <- normalizePath(dirname(script_path))
options(r_service.code_dir = file.path(service_dir, "R"))
code_env <- rservicecommon::load_service_code(file.path(service_dir, "R"))
Sys.setenv(R_SERVICE_NAME = "r-brms-plumber")
compiled <- code_env$ensure_templates()
rservicecommon::log_event(
  "info", "growth templates ready",
  template_dir = code_env$template_dir(), compiled = I(compiled)
)
