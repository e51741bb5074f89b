/* Prometheus metrics of a node: a section of the SGA ("metrics") with one slot per daemon,
 * each a table of named figures the daemon publishes from its heartbeat timer (the same
 * answers `coralctl` prints, flattened from their protobuf replies through the descriptors),
 * and the renderer of the text exposition format that coral-node serves on base_port+6 and
 * `coralctl metrics` prints. A scrape reads the SGA only: it asks no daemon, takes no lock a
 * session takes, and a hung daemon's figures stop at its last heartbeat (its slot carries the
 * publishing pid and time; a slot whose pid is not the daemon's live one is not shown). */
#ifndef CORAL_METRICS_H
#define CORAL_METRICS_H

#include "conf.h"
#include "sga.h"
#include "sync.h"

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdio.h>

#define CORAL_METRICS_MAX 160     /* figures per daemon; more are counted in dropped */
#define CORAL_METRICS_HISTS 8     /* histograms per daemon */
#define CORAL_METRICS_BUCKETS 24  /* a histogram's buckets: le 2^k - 1 us, k = 1..24, then +Inf */

enum coral_metric_kind { CORAL_METRIC_COUNTER, CORAL_METRIC_GAUGE };

struct coral_metric {
	char name[64];      /* coral_gcs_two_way_total */
	char label[48];     /* extra labels, rendered inside the braces: kind="2-way" */
	char help[72];
	uint32_t kind;
	double value;
};

struct coral_metric_hist {
	char name[64];      /* coral_gcs_transfer_seconds */
	char label[48];
	char help[72];
	uint64_t count;
	double sum;         /* seconds */
	uint64_t le[CORAL_METRICS_BUCKETS];  /* cumulative */
};

struct coral_metrics_slot {
	struct coral_seq seq;
	int32_t pid;             /* the daemon that published it */
	uint32_t n, nh;
	uint32_t dropped;        /* figures that found no room */
	uint64_t at_real_ns;
	struct coral_metric m[CORAL_METRICS_MAX];
	struct coral_metric_hist h[CORAL_METRICS_HISTS];
};

struct coral_metrics_sga {
	struct coral_metrics_slot slot[CORAL_NDAEMONS];
};

size_t coral_metrics_sga_size(const struct coral_conf *conf);
int coral_metrics_sga_init(void *section, size_t size, const struct coral_conf *conf,
			   const struct coral_node_conf *node);
void coral_metrics_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);
struct coral_metrics_sga *coral_metrics_sga(const struct coral_sga *sga);

/* Writer side: a daemon fills its slot between begin and end (one writer per slot: the
 * daemon; a predecessor killed in the middle is repaired by begin). */
void coral_metrics_begin(struct coral_metrics_slot *s);
void coral_metrics_end(struct coral_metrics_slot *s, int32_t pid);
void coral_metrics_put(struct coral_metrics_slot *s, const char *name, const char *label, int kind,
		       double value, const char *help);
/* Every scalar field of msg (and of its non-repeated sub-messages, their names joined by
 * '_') as coral_PREFIX_FIELD: a counter (with _total) unless it is named in gauges (NULL
 * terminated); a field in microseconds or milliseconds (_us, _ms) is given in seconds.
 * Strings and repeated fields are left out. help_from names the request in the help text. */
void coral_metrics_put_pb(struct coral_metrics_slot *s, const char *prefix, const ProtobufCMessage *msg,
			  const char *const *gauges, const char *help_from);
/* A latency histogram of 8 buckets per power of two of microseconds (bucket b holds values
 * with 8 log2(us + 1) in [b, b + 1)) as a Prometheus histogram in seconds. */
void coral_metrics_put_hist_log8(struct coral_metrics_slot *s, const char *name, const char *label,
				 const uint32_t *b, int nb, uint64_t count, uint64_t sum_us, const char *help);

/* Reader side: the whole node's exposition (supervisor, node, redo, cache and every live
 * daemon's slot), labelled node="ID". Returns 0, or CORAL_ENOTRUNNING when the SGA lacks a
 * section it needs. */
int coral_metrics_render(const struct coral_sga *sga, uint32_t node, FILE *out);

#endif
