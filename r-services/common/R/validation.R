# Input validation for JSON request bodies.
#
# Tables travel column-oriented (`{"col": [...], ...}`) and arrive here as the
# named lists that `jsonlite::fromJSON(simplifyVector = TRUE)` produces. Every
# check fails with `stop_bad_request()` and a message that starts with the
# field path, e.g. `data.accuracy: values must be within [0, 1] (row 3 is 1.4)`,
# so that a caller can fix its request without reading R code.

#' Values and field paths as shown in 400 messages
#'
#' `format_value()` shows a value as messages do (strings quoted);
#' `field_path()` joins a field prefix and a name (`"data.week"`, or the name
#' alone when `field` is `NULL`); `is_json_object()` tells a parsed JSON object
#' (a named list, or an empty one) from an array or a scalar.
#'
#' @param x a value.
#' @return a string (`format_value()`, `field_path()`) or a flag.
#' @export
format_value <- function(x) {
  if (is.character(x)) {
    return(encodeString(x, quote = "\""))
  }
  if (length(x) == 1 && is.na(x)) {
    return("null")
  }
  if (is.logical(x)) {
    return(tolower(as.character(x)))
  }
  format(x, digits = 15)
}

#' @rdname format_value
#' @param field path prefix (e.g. `"data"`, `"model"`) or `NULL`.
#' @param name field name.
#' @export
field_path <- function(field, name) {
  if (is.null(field) || !nzchar(field)) name else paste0(field, ".", name)
}

#' @rdname format_value
#' @export
is_json_object <- function(x) {
  is.list(x) && !is.data.frame(x) && (length(x) == 0 || !is.null(names(x)))
}

# The parsed body as a named list; anything else is a 400 naming `body`.
#' The parsed JSON body of a request
#'
#' @param req the plumber request.
#' @return the body as a named list; 400 `body: must be a JSON object`
#'   otherwise (also for an empty body).
#' @export
request_body <- function(req) {
  body <- req$body
  if (is.null(body) || length(body) == 0) {
    stop_bad_request("body: must be a JSON object, got an empty body")
  }
  if (!is_json_object(body)) {
    stop_bad_request("body: must be a JSON object")
  }
  body
}

# Validates a column-oriented table and returns it as a data frame.
# `required` columns must be present; all columns must be arrays of scalars of
# one common, non-zero length. Columns not listed are kept (services may use
# them as covariates or features).
#' A column-oriented table from a request
#'
#' Checks that `value` is present, is an object of equal-length arrays of
#' scalars (row arrays are refused), has the `required` columns and at least
#' one row. Every failure is a 400 naming the field.
#'
#' @param value the parsed field, e.g. `body$data`.
#' @param field the field's path in messages.
#' @param required names of columns that must be present.
#' @return a `data.frame` of all columns.
#' @export
validate_table <- function(value, field = "data", required = character()) {
  if (is.null(value)) {
    stop_bad_request(paste0(field, ": required field is missing"))
  }
  if (is.data.frame(value)) {
    stop_bad_request(paste0(
      field, ": must be column-oriented (an object of equal-length arrays), ",
      "not an array of row objects"
    ))
  }
  if (!is_json_object(value) || length(value) == 0) {
    stop_bad_request(paste0(field, ": must be an object of equal-length arrays"))
  }
  missing_columns <- setdiff(required, names(value))
  if (length(missing_columns) > 0) {
    stop_bad_request(paste0(
      field_path(field, missing_columns[1]), ": required column is missing"
    ))
  }
  columns <- lapply(names(value), function(name) {
    column <- value[[name]]
    # `[]` parses as an empty list and `[null, null]` as a logical NA vector.
    if (is.list(column) && length(column) == 0) {
      return(logical())
    }
    if (is.null(column)) {
      stop_bad_request(paste0(field_path(field, name), ": must be an array, got null"))
    }
    if (!is.atomic(column) || !is.null(dim(column))) {
      stop_bad_request(paste0(field_path(field, name), ": must be an array of scalars"))
    }
    column
  })
  names(columns) <- names(value)
  lengths <- vapply(columns, length, integer(1))
  if (length(unique(lengths)) > 1) {
    shown <- paste0(names(lengths), " has ", lengths, collapse = ", ")
    stop_bad_request(paste0(field, ": columns must have equal lengths (", shown, ")"))
  }
  if (lengths[1] == 0) {
    stop_bad_request(paste0(field, ": must contain at least one row"))
  }
  as.data.frame(columns, stringsAsFactors = FALSE, optional = TRUE)
}

check_no_missing <- function(values, path) {
  missing_rows <- which(is.na(values))
  if (length(missing_rows) > 0) {
    stop_bad_request(paste0(path, ": values must not be null (row ", missing_rows[1], ")"))
  }
}

# Largest magnitude accepted for a number in a request (tables and scalars),
# unless an endpoint documents a narrower range. Beyond it, sums of squares and
# standardisation overflow or lose all precision; no learning metric is that large.
max_abs_number <- 1e12

# Numeric column with optional range and whole-number checks. Returns a double
# vector (integer-valued columns are returned as integers when `integer`).
# Booleans and strings are refused (the row named is the first offending one),
# as are NaN (never a missing value, even with `allow_missing`), non-finite
# values and magnitudes beyond `max_abs_number`.
#' Column validators
#'
#' Each checks one column of a table from [validate_table()] and returns its
#' values, or fails with a 400 `<field>.<column>: <problem>` naming the first
#' offending row (1-based).
#'
#' * `check_numeric_column()`: numbers (booleans and strings refused), never
#'   NaN, no nulls unless `allow_missing`, finite and within +-1e12, whole
#'   numbers when `integer`, within `[min, max]`; returns a double vector (an
#'   integer vector when `integer`).
#' * `check_probability_column()`: numbers within `[0, 1]`.
#' * `check_id_column()`: strings or numbers, no nulls; returned unchanged.
#' * `check_date_column()`: ISO `YYYY-MM-DD` strings; returns a `Date` vector.
#' * `check_choice_column()`: each value one of `choices`.
#' * `check_unique_rows()`: no two rows share the values of `columns`; returns
#'   the table.
#'
#' @param table a table from [validate_table()].
#' @param column the column's name.
#' @param columns names of the columns that identify a row.
#' @param field the table's path in messages.
#' @param min,max allowed range.
#' @param integer require whole numbers.
#' @param allow_missing accept nulls (`NA`).
#' @param choices allowed values.
#' @return the checked values (see above).
#' @export
check_numeric_column <- function(table, column, field = "data", min = -Inf, max = Inf,
                                 integer = FALSE, allow_missing = FALSE) {
  path <- field_path(field, column)
  values <- table[[column]]
  if (is.null(values)) {
    stop_bad_request(paste0(path, ": required column is missing"))
  }
  if (!is.numeric(values) && !all(is.na(values))) {
    not_number <- which(!is.na(values) & is.na(suppressWarnings(as.numeric(values))))
    bad_row <- if (is.character(values) && length(not_number) > 0) not_number[1] else which(!is.na(values))[1]
    what <- if (is.logical(values)) {
      "numbers, not booleans"
    } else if (length(not_number) == 0) {
      "numbers, not strings"
    } else {
      "numbers"
    }
    stop_bad_request(paste0(
      path, ": values must be ", what, " (row ", bad_row, " is ",
      format_value(values[bad_row]), ")"
    ))
  }
  values <- as.numeric(values)
  nan_rows <- which(is.nan(values))
  if (length(nan_rows) > 0) {
    stop_bad_request(paste0(path, ": values must be numbers or null, not NaN (row ", nan_rows[1], ")"))
  }
  if (!allow_missing) {
    check_no_missing(values, path)
  }
  present <- !is.na(values)
  bad <- which(present & (!is.finite(values) | abs(values) > max_abs_number))
  if (length(bad) > 0) {
    stop_bad_request(paste0(
      path, ": values must be finite numbers within +-", format_value(max_abs_number),
      " (row ", bad[1], " is ", format_value(values[bad[1]]), ")"
    ))
  }
  if (integer) {
    bad <- which(present & values != round(values))
    if (length(bad) > 0) {
      stop_bad_request(paste0(
        path, ": values must be whole numbers (row ", bad[1], " is ",
        format_value(values[bad[1]]), ")"
      ))
    }
  }
  bad <- which(present & (values < min | values > max))
  if (length(bad) > 0) {
    stop_bad_request(paste0(
      path, ": values must be within [", format_value(min), ", ", format_value(max),
      "] (row ", bad[1], " is ", format_value(values[bad[1]]), ")"
    ))
  }
  if (integer) as.integer(values) else values
}

# Rows must be unique on `columns` (e.g. one row per user and week).
#' @rdname check_numeric_column
#' @export
check_unique_rows <- function(table, columns, field = "data") {
  duplicate <- anyDuplicated(as.data.frame(table)[columns])
  if (duplicate > 0) {
    repeated <- vapply(columns, function(column) format_value(table[[column]][duplicate]), "")
    shown <- paste0(columns, " ", repeated, collapse = ", ")
    stop_bad_request(paste0(
      field, ": rows must be unique on (", paste(columns, collapse = ", "), "); row ",
      duplicate, " repeats ", shown
    ))
  }
  invisible(table)
}

#' @rdname check_numeric_column
#' @export
check_probability_column <- function(table, column, field = "data", allow_missing = FALSE) {
  check_numeric_column(table, column, field, min = 0, max = 1, allow_missing = allow_missing)
}

# Identifier column (strings or whole numbers, no nulls). Returned unchanged so
# that responses echo ids with the type the caller sent.
#' @rdname check_numeric_column
#' @export
check_id_column <- function(table, column, field = "data") {
  path <- field_path(field, column)
  values <- table[[column]]
  if (is.null(values)) {
    stop_bad_request(paste0(path, ": required column is missing"))
  }
  check_no_missing(values, path)
  if (!is.character(values) && !is.numeric(values)) {
    stop_bad_request(paste0(path, ": values must be strings or integers"))
  }
  if (is.numeric(values) && !all(is.finite(values))) {
    bad <- which(!is.finite(values))[1]
    stop_bad_request(paste0(path, ": values must be finite (row ", bad, " is ", format_value(values[bad]), ")"))
  }
  values
}

# ISO `YYYY-MM-DD` dates; returns a Date vector.
#' @rdname check_numeric_column
#' @export
check_date_column <- function(table, column, field = "data") {
  path <- field_path(field, column)
  values <- table[[column]]
  if (is.null(values)) {
    stop_bad_request(paste0(path, ": required column is missing"))
  }
  check_no_missing(values, path)
  text <- as.character(values)
  dates <- as.Date(text, format = "%Y-%m-%d")
  bad <- which(!is.character(values) | is.na(dates) | !grepl("^\\d{4}-\\d{2}-\\d{2}$", text))
  if (length(bad) > 0) {
    stop_bad_request(paste0(
      path, ": values must be ISO dates YYYY-MM-DD (row ", bad[1], " is ",
      format_value(values[bad[1]]), ")"
    ))
  }
  dates
}

#' @rdname check_numeric_column
#' @export
check_choice_column <- function(table, column, choices, field = "data") {
  path <- field_path(field, column)
  values <- table[[column]]
  if (is.null(values)) {
    stop_bad_request(paste0(path, ": required column is missing"))
  }
  check_no_missing(values, path)
  bad <- which(!(values %in% choices))
  if (length(bad) > 0) {
    stop_bad_request(paste0(
      path, ": values must be one of ", paste(format_value(choices), collapse = ", "),
      " (row ", bad[1], " is ", format_value(values[bad[1]]), ")"
    ))
  }
  values
}

# A scalar number from an object. JSON null or an absent field gives `default`;
# without a default the field is required.
#' Scalar fields of a request body
#'
#' Read `body[[name]]`; an absent or `null` field gives `default`, and without
#' a default the field is required. Failures are 400s naming the field.
#'
#' * `scalar_number()`: a finite number within +-1e12 and `[min, max]`
#'   (booleans refused), whole when `integer`.
#' * `scalar_string()`: a string, one of `choices` when given.
#' * `scalar_flag()`: `TRUE` or `FALSE`.
#' * `string_array()`: at least `min_length` distinct strings.
#'
#' @param body the parsed body (or a nested object of it).
#' @param name the field's name.
#' @param default value when the field is absent or `null`; `NULL` makes the
#'   field required.
#' @param min,max allowed range.
#' @param integer require a whole number (returned as integer).
#' @param choices allowed values.
#' @param min_length fewest elements.
#' @param field path prefix of `body` in messages, e.g. `"model"`.
#' @return the value.
#' @export
scalar_number <- function(body, name, default = NULL, min = -Inf, max = Inf,
                          integer = FALSE, field = NULL) {
  path <- field_path(field, name)
  value <- body[[name]]
  if (is.null(value)) {
    if (is.null(default)) {
      stop_bad_request(paste0(path, ": required field is missing"))
    }
    return(default)
  }
  if (!is.numeric(value) || length(value) != 1 || is.na(value) || !is.null(dim(value))) {
    stop_bad_request(paste0(path, ": must be a single number"))
  }
  if (!is.finite(value) || abs(value) > max_abs_number) {
    stop_bad_request(paste0(
      path, ": must be a finite number within +-", format_value(max_abs_number), ", got ", format_value(value)
    ))
  }
  if (integer && value != round(value)) {
    stop_bad_request(paste0(path, ": must be a whole number, got ", format_value(value)))
  }
  if (value < min || value > max) {
    stop_bad_request(paste0(
      path, ": must be within [", format_value(min), ", ", format_value(max),
      "], got ", format_value(value)
    ))
  }
  if (integer) as.integer(value) else as.numeric(value)
}

#' @rdname scalar_number
#' @export
scalar_string <- function(body, name, default = NULL, choices = NULL, field = NULL) {
  path <- field_path(field, name)
  value <- body[[name]]
  if (is.null(value)) {
    if (is.null(default)) {
      stop_bad_request(paste0(path, ": required field is missing"))
    }
    return(default)
  }
  if (!is.character(value) || length(value) != 1 || is.na(value)) {
    stop_bad_request(paste0(path, ": must be a string"))
  }
  if (!is.null(choices) && !(value %in% choices)) {
    stop_bad_request(paste0(
      path, ": must be one of ", paste(format_value(choices), collapse = ", "),
      ", got ", format_value(value)
    ))
  }
  value
}

#' @rdname scalar_number
#' @export
scalar_flag <- function(body, name, default = NULL, field = NULL) {
  path <- field_path(field, name)
  value <- body[[name]]
  if (is.null(value)) {
    if (is.null(default)) {
      stop_bad_request(paste0(path, ": required field is missing"))
    }
    return(default)
  }
  if (!is.logical(value) || length(value) != 1 || is.na(value)) {
    stop_bad_request(paste0(path, ": must be true or false"))
  }
  value
}

# An array of distinct strings, e.g. a list of feature or covariate names.
#' @rdname scalar_number
#' @export
string_array <- function(body, name, default = NULL, min_length = 1L, field = NULL) {
  path <- field_path(field, name)
  value <- body[[name]]
  if (is.null(value)) {
    if (is.null(default)) {
      stop_bad_request(paste0(path, ": required field is missing"))
    }
    return(default)
  }
  if (is.list(value) && length(value) == 0) {
    value <- character()
  }
  if (!is.character(value) || any(is.na(value)) || !is.null(dim(value))) {
    stop_bad_request(paste0(path, ": must be an array of strings"))
  }
  if (length(value) < min_length) {
    stop_bad_request(paste0(path, ": must contain at least ", min_length, " value(s)"))
  }
  if (anyDuplicated(value)) {
    repeated <- format_value(value[anyDuplicated(value)])
    stop_bad_request(paste0(path, ": values must be distinct (", repeated, " repeats)"))
  }
  value
}
