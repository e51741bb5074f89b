/* coral-node's metrics port: GET /metrics on base_port+6 ([metrics]) answers the node's
 * Prometheus exposition (metrics.h), read from the SGA at each scrape. */
#ifndef CORAL_METRICS_HTTP_H
#define CORAL_METRICS_HTTP_H

#include "conf.h"
#include "sga.h"

#include <stddef.h>

struct event_base;
struct metrics_http;

/* NULL with err empty when [metrics] enabled is off; NULL with err set when it cannot
 * serve (a token file refused, the port taken). */
struct metrics_http *metrics_http_start(struct event_base *base, const struct coral_conf *conf,
					const struct coral_node_conf *node, const struct coral_sga *sga,
					char *err, size_t errsz);
void metrics_http_stop(struct metrics_http *m);

#endif
