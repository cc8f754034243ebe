# The exm R package: exm's runtime API from an R session started under exm
# (`exm R`, `exm Rscript script.R`). The C side (src/rexm.c) calls the exm
# library already preloaded into the session; outside exm every function but
# exm_available() stops with a message saying how to start R under exm.

.child_modes <- c("copy on write", "shared", "duplicate")
.advices <- c("auto", "normal", "sequential", "random")

# Stops with the reason unless the session runs under a matching libexm.
.need_exm <- function() {
  if (!.Call(C_available)) stop(.Call(C_unavailable_reason), call. = FALSE)
  invisible(TRUE)
}

# Bytes from a number or a size string ("512M", "2G", "1.5GiB", "4096").
.bytes <- function(x, what, allow_inf = TRUE) {
  if (is.character(x)) {
    if (length(x) != 1L || is.na(x)) stop(what, " must be one size", call. = FALSE)
    m <- regmatches(x, regexec("^\\s*([0-9]*\\.?[0-9]+)\\s*([kKmMgGtT]?)([iI]?[bB])?\\s*$", x))[[1]]
    if (length(m) == 0L) {
      if (allow_inf && tolower(trimws(x)) %in% c("inf", "infinity")) return(Inf)
      stop(what, ": cannot read '", x, "' as a size (bytes, or a number with K, M, G or T)",
           call. = FALSE)
    }
    unit <- match(toupper(m[3]), c("", "K", "M", "G", "T"))
    if (m[3] == "" && nzchar(m[4]) && grepl("^[iI]", m[4]))
      stop(what, ": cannot read '", x, "' as a size", call. = FALSE)
    x <- floor(as.numeric(m[2]) * 1024^(unit - 1))
  }
  if (!is.numeric(x) || length(x) != 1L || is.na(x))
    stop(what, " must be one number of bytes or a size such as \"64M\"", call. = FALSE)
  as.double(x)
}

exm_available <- function() .Call(C_available)

exm_version <- function() {
  .need_exm()
  .Call(C_version)
}

exm_threshold <- function(bytes) {
  .need_exm()
  old <- .Call(C_get_threshold)
  if (missing(bytes)) return(old)
  auto <- is.character(bytes) && length(bytes) == 1L && !is.na(bytes) &&
    tolower(trimws(bytes)) == "auto"
  .Call(C_set_threshold, if (auto) "auto" else .bytes(bytes, "the threshold"))
  invisible(old)
}

exm_set_threshold <- function(bytes) {
  .need_exm()
  invisible(exm_threshold(bytes))
}

exm_data_path <- function(path) {
  .need_exm()
  old <- .Call(C_get_dir)
  if (missing(path)) return(old)
  if (!is.character(path) || length(path) != 1L || is.na(path))
    stop("path must be one character string", call. = FALSE)
  if (!dir.exists(path))
    stop("cannot use '", path, "' as exm's data directory: no such directory", call. = FALSE)
  .Call(C_set_dir, normalizePath(path, mustWork = TRUE))
  invisible(old)
}

.child_mode_index <- function(mode) {
  if (!is.character(mode) || length(mode) != 1L || is.na(mode))
    stop("mode must be one of \"copy on write\" (or \"cow\"), \"shared\", \"duplicate\"",
         call. = FALSE)
  key <- gsub("[-_ ]+", " ", tolower(trimws(mode)))
  if (key %in% c("cow", "copy on write")) return(0L)
  i <- match(key, .child_modes)
  if (is.na(i))
    stop("unknown child mode '", mode,
         "': use \"copy on write\" (or \"cow\"), \"shared\" or \"duplicate\"", call. = FALSE)
  i - 1L
}

exm_child_mode <- function(mode) {
  .need_exm()
  old <- .child_modes[.Call(C_get_child_mode) + 1L]
  if (missing(mode)) return(old)
  .Call(C_set_child_mode, .child_mode_index(mode))
  invisible(old)
}

# Sets the child mode; with an expression, only while evaluating it.
.with_child_mode <- function(mode, expr, has_expr, env) {
  old <- exm_child_mode(mode)
  if (!has_expr) return(invisible(old))
  on.exit(exm_child_mode(old), add = TRUE)
  eval(expr, env)
}

exm_cow <- function(expr)
  .with_child_mode("copy on write", substitute(expr), !missing(expr), parent.frame())

exm_shared <- function(expr)
  .with_child_mode("shared", substitute(expr), !missing(expr), parent.frame())

exm_duplicate <- function(expr)
  .with_child_mode("duplicate", substitute(expr), !missing(expr), parent.frame())

.advice_index <- function(advice, allow_auto) {
  ok <- if (allow_auto) .advices else .advices[-1L]
  if (!is.character(advice) || length(advice) != 1L || is.na(advice) ||
      !(tolower(advice) %in% ok))
    stop("advice must be one of ", paste0("\"", ok, "\"", collapse = ", "), call. = FALSE)
  match(tolower(advice), .advices) - 1L
}

exm_advice <- function(advice) {
  .need_exm()
  old <- .advices[.Call(C_get_advice) + 1L]
  if (missing(advice)) return(old)
  .Call(C_set_advice, .advice_index(advice, TRUE))
  invisible(old)
}

exm_max_disk <- function(bytes) {
  .need_exm()
  old <- .Call(C_get_max_disk)
  if (missing(bytes)) return(old)
  .Call(C_set_max_disk, .bytes(bytes, "the disk cap", allow_inf = FALSE))
  invisible(old)
}

exm_lookup <- function(x) {
  .need_exm()
  .Call(C_lookup, x)
}

exm_is_file_backed <- function(x) {
  .need_exm()
  .Call(C_is_file_backed, x)
}

exm_advise <- function(x, advice = c("normal", "random", "sequential")) {
  .need_exm()
  if (missing(advice)) advice <- "normal"
  done <- .Call(C_advise, x, .advice_index(advice, FALSE))
  if (!done)
    warning("x is not file-backed (its data are in ordinary memory): nothing advised",
            call. = FALSE)
  invisible(done)
}

exm_stats <- function() {
  .need_exm()
  .Call(C_stats)
}

exm_check <- function() {
  .need_exm()
  .Call(C_check)
}

exm_vector <- function(mode = "double", length = 0L) {
  .need_exm()
  if (identical(mode, "numeric")) mode <- "double"
  .Call(C_vector, mode, as.double(length))
}
