# Fitted-model store: one RDS file per model under MODEL_DIR, addressed by a
# generated `model_id` such as `growth-20240101T043000-3f9c2a1b7d4e5f60`.
# Ids are checked against a strict pattern before touching the file system, so
# a crafted id can never reach outside MODEL_DIR.

model_id_pattern <- "^[a-z][a-z0-9]*-[0-9]{8}T[0-9]{6}-[0-9a-f]{16}$"

#' The model store
#'
#' Models are RDS files under `MODEL_DIR` (default `./models`).
#' `save_model()` stores an object under a new id
#' `<prefix>-<YYYYMMDDTHHMMSS UTC>-<16 hex>`; `load_model()` reads one back,
#' with a 400 if `model_id` is missing or not a string and a 404 if it is
#' malformed, of another prefix or absent (ids are matched against a strict
#' pattern before any file access). `write_atomically()` writes through
#' `write(partial)` to a temporary file next to `path`, then renames it over
#' `path`, so readers see the old or the new file, never half;
#' `save_rds_atomically()` is `saveRDS()` through it.
#'
#' @return `model_dir()` the store directory.
#' @export
model_dir <- function() {
  dir <- Sys.getenv("MODEL_DIR", unset = "")
  if (!nzchar(dir)) file.path(getwd(), "models") else dir
}

new_model_id <- function(prefix) {
  if (!grepl("^[a-z][a-z0-9]*$", prefix)) {
    stop("model id prefix must be lowercase letters and digits: ", prefix)
  }
  paste(prefix, format(Sys.time(), "%Y%m%dT%H%M%S", tz = "UTC"), random_hex(8L), sep = "-")
}

model_path <- function(model_id) {
  file.path(model_dir(), paste0(model_id, ".rds"))
}

# A file name next to `path` no other process or call uses.
temporary_path <- function(path) paste0(path, ".tmp-", Sys.getpid(), "-", random_hex(4L))

# The one way a service writes a file others read (models, job states and
# results, compiled templates): `write(partial)` writes a temporary file next to
# `path`, which is then renamed over it, so a concurrent reader sees the old
# file or the new one, never half of one. A failed rename is an error.
#' @rdname model_dir
#' @param path the file to write.
#' @param write a function of the temporary path that writes the content.
#' @export
write_atomically <- function(path, write) {
  partial <- temporary_path(path)
  write(partial)
  reason <- "rename failed"
  renamed <- withCallingHandlers(
    file.rename(partial, path),
    warning = function(w) {
      reason <<- conditionMessage(w)
      invokeRestart("muffleWarning")
    }
  )
  if (!renamed) {
    unlink(partial)
    stop("could not write ", path, " (", reason, ")")
  }
  invisible(path)
}

#' @rdname model_dir
#' @export
save_rds_atomically <- function(object, path) {
  write_atomically(path, function(partial) saveRDS(object, partial))
}

# Saves `object` and returns its new model_id.
#' @rdname model_dir
#' @param object an R object.
#' @param prefix lowercase letters and digits, e.g. `"growth"`.
#' @return `save_model()` the new model id.
#' @export
save_model <- function(object, prefix) {
  dir.create(model_dir(), recursive = TRUE, showWarnings = FALSE)
  model_id <- new_model_id(prefix)
  save_rds_atomically(object, model_path(model_id))
  model_id
}

# Loads a stored model. `field` names the request field in error messages.
# A prefix (e.g. "growth") restricts which kind of model the id may name.
#' @rdname model_dir
#' @param model_id the id sent by the client.
#' @param prefix the expected prefix, or `NULL` for any.
#' @param field the field's path in messages.
#' @return `load_model()` the stored object.
#' @export
load_model <- function(model_id, prefix = NULL, field = "model_id") {
  if (is.null(model_id)) {
    stop_bad_request(paste0(field, ": required field is missing"))
  }
  if (!is.character(model_id) || length(model_id) != 1 || is.na(model_id)) {
    stop_bad_request(paste0(field, ": must be a string"))
  }
  well_formed <- grepl(model_id_pattern, model_id)
  right_kind <- is.null(prefix) || startsWith(model_id, paste0(prefix, "-"))
  path <- model_path(model_id)
  if (!well_formed || !right_kind || !file.exists(path)) {
    stop_not_found(paste0(field, ": unknown model ", format_value(model_id)))
  }
  readRDS(path)
}
