# Templates are cached across runs (compiling both families takes minutes);
# BRMS_TEMPLATE_DIR from the environment wins.
template_cache_dir <- Sys.getenv(
  "BRMS_TEMPLATE_DIR",
  unset = file.path(tools::R_user_dir("r-brms-plumber", "cache"), "templates")
)
brms_service <- start_test_service(
  "r-brms-plumber",
  env = c(BRMS_TEMPLATE_DIR = template_cache_dir),
  timeout_s = 900
)
withr::defer(stop_test_service(brms_service), teardown_env())
