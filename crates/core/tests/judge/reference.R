# Reference values for the statistical judge, computed by R independently of our code.
#
#   Rscript crates/core/tests/judge/reference.R > crates/core/tests/judge/reference.json
#
# Run once (R 4.2, Debian's r-base-core) and committed with its output, so the tests need no R.
# For each vector pair (x = canary, y = primary) it records wilcox.test(x, y, conf.int = TRUE,
# exact = FALSE, correct = TRUE) at R's default root tolerance (1e-4) and at the judge's scaled
# tolerance (1e-4 * min(1, max(x) - min(y) - (min(x) - max(y)))); for each pair of counts,
# prop.test(c(x1, x2), c(n1, n2)); and a few type-7 quantiles (the outlier fences). Where R
# would use the exact distribution by default (under 50 points a side, no ties), it also
# records wilcox.test(x, y, conf.int = TRUE) with exact = TRUE.

num <- function(v) {
  s <- ifelse(is.finite(v), sprintf("%.17g", v), ifelse(is.na(v), "null", ifelse(v > 0, "1e999", "-1e999")))
  paste0("[", paste(s, collapse = ", "), "]")
}
one <- function(v) sprintf("%.17g", v)

set.seed(20240611)
cases <- list(
  list(name = "shifted normal samples", x = round(rnorm(30, 105, 10), 2), y = round(rnorm(30, 100, 10), 2)),
  list(name = "shifted normal samples at 95%", x = round(rnorm(25, 52, 5), 1), y = round(rnorm(25, 50, 5), 1), conf = 0.95),
  list(name = "identical samples", x = c(3.1, 4.2, 5.0, 6.7, 7.3, 8.8), y = c(3.1, 4.2, 5.0, 6.7, 7.3, 8.8)),
  list(name = "same values in another order", x = c(1, 2, 3, 4, 5), y = c(5, 4, 3, 2, 1)),
  list(name = "heavy ties", x = c(1, 1, 2, 2, 2, 3, 3, 4), y = c(1, 2, 2, 3, 3, 3, 4, 4, 5)),
  list(name = "heavy ties at 95%", x = c(1, 1, 2, 2, 2, 3, 3, 4), y = c(1, 2, 2, 3, 3, 3, 4, 4, 5), conf = 0.95),
  list(name = "poisson counts", x = rpois(40, 3), y = rpois(40, 2)),
  list(name = "constant canary", x = rep(5, 8), y = c(1, 2, 3, 4, 5, 6, 7, 8)),
  list(name = "constant primary", x = c(2.5, 3, 2, 4, 3.5, 2.2, 2.8, 3.3, 2.9, 3.1), y = rep(2, 10)),
  list(name = "two near-constant sides", x = 10 + c(1, -2, 0.5, 1.5, -0.7) * 1e-4, y = 1 + c(-0.3, 0.8, 1.2, -1.1, 0.2, 0.4) * 1e-5),
  list(name = "one point against two", x = 1, y = c(2, 3.5)),
  list(name = "two against one", x = c(1, 2), y = 3),
  list(name = "three against three", x = c(1.1, 2.3, 0.7), y = c(3.2, 4.1, 2.9)),
  list(name = "interval at the search range end", x = 1, y = 2:60),
  list(name = "large samples", x = round(rnorm(500, 10.1, 1), 3), y = round(rnorm(400, 10, 1), 3)),
  list(name = "large samples with many ties", x = round(rnorm(1000, 5.05, 1), 1), y = round(rnorm(1000, 5, 1), 1)),
  list(name = "latency in seconds", x = round(rlnorm(30, log(0.026), 0.1), 5), y = round(rlnorm(30, log(0.02), 0.1), 5)),
  list(name = "error ratios", x = round(abs(rnorm(40, 0.0012, 0.0003)), 6), y = round(abs(rnorm(40, 0.001, 0.0003)), 6)),
  list(name = "latency in milliseconds", x = round(rnorm(60, 250, 30), 1), y = round(rnorm(60, 240, 30), 1)),
  list(name = "negative values shifted down", x = round(rnorm(20, -5, 1), 3), y = round(rnorm(20, -4, 1), 3)),
  list(name = "unequal sizes", x = c(12.1, 13.4, 11.8, 12.9, 14.2), y = round(rnorm(50, 12, 1), 2)),
  list(name = "kayenta spinnaker#6278 minority of huge values", x = c(rep(100, 7), rep(1, 3)), y = rep(1, 10)),
  list(name = "kayenta#426 sparse errors", x = c(0, 1, 2, 1, 0, 0), y = rep(0, 6)),
  list(name = "kayenta#780 variability",
       x = c(10.0, 10.1, 10.2, 10.3, 10.4, 10.5, 10.6, 17.0, 17.1, 17.2, 17.3, 17.4, 17.5, 17.6, 17.7),
       y = c(1.0, 100.0, 4.0, 101.0, 5.0, 102.0, 6.0, 103.0, 7.0, 104.0, 8.0, 105.0, 9.0, 106.0, 17.0)),
  list(name = "kayenta mean-ratio high", x = c(20, 22, 21, 25, 30), y = c(1, 2.2, 1.1, 2.5, 3)),
  list(name = "kayenta majority tied", x = c(1, 1, 1, 1, 10), y = c(1, 1, 1, 1, 1)),
  list(name = "zero-heavy with one burst", x = c(rep(0, 20), 50), y = c(rep(0, 19), 1, 0)),
  list(name = "four against five, separated", x = c(5.1, 6.3, 4.8, 7.2), y = c(3.3, 2.9, 4.1, 3.8, 2.5)),
  list(name = "six against six, overlapping", x = c(1.2, 3.4, 2.2, 5.1, 4.4, 2.9), y = c(2.1, 1.1, 3.3, 0.4, 2.6, 1.9)),
  list(name = "tie-free, 45 against 40", x = round(rnorm(45, 1.3, 1), 6), y = round(rnorm(40, 1, 1), 6))
)

wilcox <- function(x, y, conf, tol) {
  t <- suppressWarnings(wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE,
                                    conf.level = conf, tol.root = tol))
  sprintf('{"statistic": %s, "p_value": %s, "estimate": %s, "lower": %s, "upper": %s, "tol": %s}',
          one(t$statistic), one(t$p.value), one(t$estimate), one(t$conf.int[1]), one(t$conf.int[2]), one(tol))
}

exact <- function(x, y, conf) {
  if (length(unique(c(x, y))) != length(c(x, y)) || length(x) >= 50 || length(y) >= 50) return("null")
  t <- suppressWarnings(wilcox.test(x, y, conf.int = TRUE, exact = TRUE, correct = TRUE, conf.level = conf))
  sprintf('{"statistic": %s, "p_value": %s, "estimate": %s, "lower": %s, "upper": %s, "confidence_level": %s}',
          one(t$statistic), one(t$p.value), one(t$estimate), one(t$conf.int[1]), one(t$conf.int[2]), one(attr(t$conf.int, "conf.level")))
}

out <- c()
for (c in cases) {
  conf <- if (is.null(c$conf)) 0.98 else c$conf
  range <- (max(c$x) - min(c$y)) - (min(c$x) - max(c$y))
  scaled <- 1e-4 * min(1, range)
  out <- c(out, sprintf('    {"name": "%s", "confidence_level": %s,\n     "x": %s,\n     "y": %s,\n     "r_tolerance": %s,\n     "scaled_tolerance": %s,\n     "exact": %s}',
                        c$name, one(conf), num(c$x), num(c$y), wilcox(c$x, c$y, conf, 1e-4), wilcox(c$x, c$y, conf, scaled), exact(c$x, c$y, conf)))
}

props <- list(c(30, 6000, 0, 6000), c(3, 6000, 0, 6000), c(120, 10000, 100, 10000), c(50, 1000, 20, 1000),
              c(0, 500, 5, 500), c(7.5, 1203.4, 2.2, 1190.8), c(200, 200, 150, 200), c(1, 10, 1, 10),
              c(12, 48000, 10, 52000))
pout <- c()
for (p in props) {
  t <- suppressWarnings(prop.test(c(p[1], p[3]), c(p[2], p[4]), conf.level = 0.98, correct = TRUE))
  pout <- c(pout, sprintf('    {"canary": [%s, %s], "primary": [%s, %s], "estimate": %s, "lower": %s, "upper": %s, "statistic": %s, "p_value": %s}',
                          one(p[1]), one(p[2]), one(p[3]), one(p[4]), one(t$estimate[1] - t$estimate[2]),
                          one(t$conf.int[1]), one(t$conf.int[2]), one(t$statistic), one(t$p.value)))
}

qx <- round(rlnorm(37, 0, 1), 4)
probs <- c(0.01, 0.25, 0.5, 0.75, 0.99)
qout <- sprintf('  "quantiles": {"values": %s, "percents": %s, "type7": %s}', num(qx), num(probs * 100), num(quantile(qx, probs, type = 7, names = FALSE)))

cat("{\n")
cat(sprintf('  "generator": "%s",\n', R.version.string))
cat('  "wilcoxon": [\n')
cat(paste(out, collapse = ",\n"))
cat("\n  ],\n")
cat('  "proportions": [\n')
cat(paste(pout, collapse = ",\n"))
cat("\n  ],\n")
cat(qout)
cat("\n}\n")
