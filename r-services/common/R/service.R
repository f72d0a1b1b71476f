# Assembling a service: the plumber router of `<service>/plumber.R` plus what
# every service shares (auth, body limits, JSON parsing and errors, request
# logs, `/health`, OpenAPI document).

# Paths reachable without a token: probes and API documentation.
open_path <- function(path) {
  path %in% c("/health", "/openapi.json") || startsWith(path, "/__docs__")
}

max_body_bytes <- function() env_setting("MAX_BODY_BYTES", 50 * 1024^2, min = 1)

# Compares without stopping at the first differing byte, so response timing
# does not reveal how much of a guessed token was right.
tokens_equal <- function(supplied, expected) {
  supplied_bytes <- as.integer(charToRaw(supplied))
  expected_bytes <- as.integer(charToRaw(expected))
  n <- max(length(supplied_bytes), length(expected_bytes))
  pad <- function(bytes) c(bytes, rep(0L, n - length(bytes)))
  difference <- sum(bitwXor(pad(supplied_bytes), pad(expected_bytes)))
  difference == 0L && length(supplied_bytes) == length(expected_bytes)
}

bearer_token <- function(req) {
  header <- req$HTTP_AUTHORIZATION
  if (is.null(header) || !grepl("^Bearer\\s+\\S+", header, ignore.case = TRUE)) {
    return(NULL)
  }
  trimws(sub("^Bearer\\s+", "", header, ignore.case = TRUE))
}

# Filters run in this order after plumber's own (query string, body reading).
limit_body_filter <- function(req, res) {
  limit <- max_body_bytes()
  declared <- suppressWarnings(as.numeric(req$CONTENT_LENGTH %||% NA))
  received <- length(req$bodyRaw)
  if (isTRUE(declared > limit) || received > limit) {
    res$status <- 413L
    return(list(error = sprintf(
      "body: request body exceeds the limit of %s bytes", format(limit, scientific = FALSE)
    )))
  }
  plumber::forward()
}

auth_filter <- function(req, res) {
  if (open_path(req$PATH_INFO)) {
    return(plumber::forward())
  }
  token <- bearer_token(req)
  if (is.null(token)) {
    res$status <- 401L
    return(list(error = "authorization: missing bearer token (Authorization: Bearer <token>)"))
  }
  if (!tokens_equal(token, Sys.getenv("R_SERVICE_TOKEN"))) {
    res$status <- 401L
    return(list(error = "authorization: invalid bearer token"))
  }
  plumber::forward()
}

# Request bodies are parsed as JSON whatever the declared content type, with
# vectors simplified so that table columns become R vectors. Invalid JSON is a
# 400 naming `body`, never a 500. jsonlite's simplification hides two kinds of
# junk, so the unsimplified tree is checked first: an array mixing numbers,
# booleans and strings (`[true, 1]` would become `c(1L, 1L)`) and an object
# with a repeated key (both values would be kept).
json_body_parser <- function(value, ...) {
  text <- rawToChar(value)
  Encoding(text) <- "UTF-8"
  parse <- function(simplify) {
    tryCatch(
      jsonlite::fromJSON(text, simplifyVector = simplify),
      error = function(err) {
        # jsonlite's message spans lines with an ASCII pointer; the first is enough.
        reason <- strsplit(trimws(conditionMessage(err)), "\n", fixed = TRUE)[[1]][1]
        stop_bad_request(paste0("body: invalid JSON (", trimws(reason), ")"))
      }
    )
  }
  check_json_tree(parse(FALSE))
  parse(TRUE)
}

json_kind <- function(x) {
  if (is.null(x)) {
    "null"
  } else if (is.logical(x)) {
    "boolean"
  } else if (is.numeric(x)) {
    "number"
  } else if (is.character(x)) {
    "string"
  } else {
    "other"
  }
}

check_json_tree <- function(node, path = NULL) {
  if (!is.list(node)) {
    return(invisible(NULL))
  }
  keys <- names(node)
  child_path <- function(i) {
    if (!is.null(keys)) field_path(path, keys[i]) else paste0(path %||% "body", "[", i, "]")
  }
  if (!is.null(keys)) {
    if (anyDuplicated(keys)) {
      stop_bad_request(paste0(path %||% "body", ": duplicate key ", format_value(keys[anyDuplicated(keys)])))
    }
  } else {
    scalar <- vapply(node, function(x) is.null(x) || (is.atomic(x) && length(x) == 1), logical(1))
    kinds <- vapply(node[scalar], json_kind, character(1))
    present <- kinds[kinds != "null"]
    if (length(unique(present)) > 1) {
      row <- which(scalar)[kinds != "null"][which(present != present[1])[1]]
      stop_bad_request(sprintf(
        "%s: values must all be %ss (row %d is %s %s)",
        path %||% "body", present[1], row, json_kind(node[[row]]), format_value(node[[row]])
      ))
    }
  }
  for (i in which(vapply(node, is.list, logical(1)))) {
    check_json_tree(node[[i]], child_path(i))
  }
  invisible(NULL)
}

json_only_parsers <- function() {
  structure(
    list(
      alias = list(json = json_body_parser, form = json_body_parser),
      regex = list(".*" = json_body_parser)
    ),
    class = c("plumber_parsed_parsers", "list")
  )
}

# Endpoints return column tables through this so that one-row tables still
# serialize as arrays (the default serializer unboxes length-1 vectors).
as_columns <- function(table) {
  lapply(as.list(table), I)
}

service_serializer <- function() {
  plumber::serializer_json(auto_unbox = TRUE, digits = NA, na = "null", null = "null")
}

service_version <- function(service_dir) {
  version_file <- file.path(service_dir, "VERSION")
  if (file.exists(version_file)) trimws(readLines(version_file, n = 1, warn = FALSE)) else "0.0.0"
}

# Builds the router for `<services_root>/<service_name>`. `code_env` must hold
# common's and the service's R code; plumber.R is evaluated in it.
build_service <- function(service_dir, service_name, code_env) {
  version <- service_version(service_dir)
  router <- plumber::pr(file.path(service_dir, "plumber.R"), envir = code_env)
  router$setSerializer(service_serializer())
  router$setParsers(json_only_parsers())
  router$setErrorHandler(json_error_handler)
  router$set404Handler(json_not_found_handler)
  router$filter("limit_body", limit_body_filter, serializer = plumber::serializer_unboxed_json())
  router$filter("auth", auth_filter, serializer = plumber::serializer_unboxed_json())

  health_details <- get0("health_details", envir = code_env, inherits = FALSE)
  router$handle(
    "GET", "/health",
    function() {
      health <- list(
        status = "ok",
        service = service_name,
        version = version,
        # as.integer(): a plan made with I(workers) reports an AsIs count, which the
        # JSON serializer writes as an array ([1]) instead of the number the schema says.
        workers = as.integer(future::nbrOfWorkers())
      )
      # Set by scripts/stack.sh so that a service running older code is restarted.
      code_hash <- Sys.getenv("R_SERVICE_CODE_HASH", unset = "")
      if (nzchar(code_hash)) health$code_hash <- code_hash
      if (is.function(health_details)) utils::modifyList(health, health_details()) else health
    },
    serializer = plumber::serializer_unboxed_json()
  )

  router$registerHooks(list(
    preroute = function(data, req, res) {
      supplied_id <- req$HTTP_X_REQUEST_ID
      valid_supplied <- !is.null(supplied_id) && grepl("^[A-Za-z0-9._-]{1,64}$", supplied_id)
      req$request_id <- if (valid_supplied) supplied_id else new_request_id()
      data$started_at <- Sys.time()
      res$setHeader("X-Request-Id", req$request_id)
    },
    postserialize = function(data, req, res, value) {
      log_request(req, res, data$started_at)
      value
    }
  ))

  router$handle("GET", "/jobs/<job_id>", function(job_id) get_job(job_id), serializer = service_serializer())
  router$handle("DELETE", "/jobs/<job_id>", function(job_id) cancel_job(job_id), serializer = service_serializer())

  contracts <- read_contracts(service_dir)
  router$setApiSpec(function(spec) {
    spec$info$title <- service_name
    spec$info$version <- version
    spec$paths <- contract_paths(contracts)
    spec$components <- list(
      schemas = contracts$schemas,
      securitySchemes = list(bearerAuth = list(type = "http", scheme = "bearer"))
    )
    spec$security <- list(list(bearerAuth = list()))
    spec
  })
  router
}
