/* The daemon kit (see kit.h). */
#include "kit.h"
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "selfq.h"
#include "util.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

/* ---- the core's inputs -------------------------------------------------------------- */

void *coral_kit_core(struct coral_kit *k)
{
	k->def->clock(k->core, coral_now_mono_ns(), coral_now_real_ns());
	return k->core;
}

static void on_self(void *arg, uint8_t type, const uint8_t *data, size_t len)
{
	struct coral_kit *k = arg;
	k->def->recv(coral_kit_core(k), k->self, type, data, len);
}

static void on_net_msg(void *arg, uint32_t from, uint64_t inc, uint8_t type, const uint8_t *data, size_t len)
{
	(void)inc; /* the interconnect has already refused evicted incarnations */
	struct coral_kit *k = arg;
	k->def->recv(coral_kit_core(k), from, type, data, len);
}

int coral_kit_send(struct coral_kit *k, uint32_t to, uint8_t type, const uint8_t *buf, size_t len)
{
	if (to == k->self)
		return coral_selfq_push(k->selfq, type, buf, len);
	if (k->net == NULL)
		return CORAL_ENOTCONN;
	return coral_net_send(k->net, to, type, buf, len);
}

void coral_kit_log(void *arg, int level, const char *msg)
{
	(void)arg;
	coral_log_msg(level, "%s", msg);
}

/* ---- the interconnect ---------------------------------------------------------------- */

/* The log line already names the daemon and node. */
static void on_net_refused(void *arg, uint32_t peer, int code, const char *why)
{
	(void)arg;
	coral_log_msg(CORAL_LOG_DEBUG, "the same daemon on node %u refused us (%s): %s", peer, coral_strerror(code), why);
}

static int net_start(struct coral_kit *k, uint64_t incarnation)
{
	struct coral_daemon *d = k->d;
	struct coral_net_opts no;
	char err[CORAL_ERRMSG_MAX];
	if (coral_net_opts_from_conf(&no, &k->files, &d->conf, d->node, d->name, k->def->port, incarnation,
				     coral_now_mono_ns() ^ k->self, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return CORAL_EINVAL;
	}
	no.on_msg = on_net_msg;
	no.on_refused = on_net_refused;
	no.arg = k;
	k->net = coral_net_new(d->base, &no, err, sizeof(err));
	if (k->net == NULL) {
		log_error("interconnect: %s", err);
		return CORAL_ESYS;
	}
	coral_net_add_conf_peers(k->net, &d->conf, k->self, k->def->port);
	k->incarnation = incarnation;
	return 0;
}

/* The interconnect follows raftd's view: it starts under the node's first incarnation,
 * moves to each new one, and refuses from now on every incarnation raftd has evicted. */
static int net_follow(struct coral_kit *k, const struct coral_cluster_view *v)
{
	if (v->incarnation != 0 && k->net == NULL) {
		int rc = net_start(k, v->incarnation);
		if (rc != 0)
			return rc;
	} else if (k->net && v->incarnation != 0 && v->incarnation != k->incarnation) {
		coral_net_set_incarnation(k->net, v->incarnation);
		k->incarnation = v->incarnation;
	}
	for (uint32_t i = 0; i < v->nmembers && i < CORAL_MAX_NODES && k->net; i++) {
		const struct coral_member_view *mv = &v->members[i];
		if (mv->state == CORAL_MEMBER_EVICTED && mv->id <= CORAL_MAX_NODES &&
		    k->fenced_inc[mv->id] != mv->incarnation + 1) {
			coral_net_fence_peer(k->net, mv->id, mv->incarnation + 1);
			k->fenced_inc[mv->id] = mv->incarnation + 1;
		}
	}
	return 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct coral_kit *k = arg;
	struct coral_cluster_view v;
	coral_cluster_read(k->cl, &v);
	if (net_follow(k, &v) != 0) {
		k->d->exit_code = 1;
		event_base_loopbreak(k->d->base);
		return;
	}
	coral_kit_core(k);
	k->def->tick(k->arg, &v);
}

/* ---- control requests answered later ------------------------------------------------- */

uint64_t coral_kit_wait_add(struct coral_kit *k, uint64_t conn, const Coral__CtlRequest *req, const uint32_t aux[3])
{
	size_t cap = k->def->waits;
	for (size_t n = 0; n < cap; n++) {
		size_t i = (k->wait_hint + n) % cap;
		if (k->wait_used[i])
			continue;
		k->wait_used[i] = true;
		k->waits[i] = (struct coral_wait){conn, coral_ctl_request_id(req), coral_now_mono_ns(), {0, 0, 0}};
		if (aux)
			memcpy(k->waits[i].aux, aux, sizeof(k->waits[i].aux));
		k->wait_hint = i + 1;
		k->waits_used++;
		return i + 1;
	}
	k->waits_full++;
	return 0;
}

bool coral_kit_wait_take(struct coral_kit *k, uint64_t cookie, struct coral_wait *out)
{
	if (cookie == 0 || cookie > k->def->waits || !k->wait_used[cookie - 1])
		return false;
	k->wait_used[cookie - 1] = false;
	k->waits_used--;
	*out = k->waits[cookie - 1];
	return true;
}

/* ---- start and stop ----------------------------------------------------------------- */

int coral_kit_init(struct coral_kit *k, struct coral_daemon *d, const struct coral_kit_def *def, void *arg)
{
	memset(k, 0, sizeof(*k));
	k->d = d;
	k->def = def;
	k->arg = arg;
	k->self = (uint32_t)d->node->id;
	k->cl = coral_cluster_sga(&d->sga);
	if (k->cl == NULL) {
		log_error("the SGA has no cluster section: restart the node");
		return CORAL_EVERSION;
	}
	k->waits = calloc(def->waits ? def->waits : 1, sizeof(*k->waits));
	k->wait_used = calloc(def->waits ? def->waits : 1, sizeof(*k->wait_used));
	k->selfq = coral_selfq_new(d->base, def->selfq, on_self, k);
	k->ev_tick = event_new(d->base, -1, EV_PERSIST, on_tick, k);
	if (k->waits == NULL || k->wait_used == NULL || k->selfq == NULL || k->ev_tick == NULL)
		return CORAL_ENOMEM;
	return 0;
}

int coral_kit_start(struct coral_kit *k, void *core)
{
	k->core = core;
	struct timeval tv = {k->def->tick_ms / 1000, (k->def->tick_ms % 1000) * 1000};
	return core == NULL || event_add(k->ev_tick, &tv) != 0 ? CORAL_ENOMEM : 0;
}

void coral_kit_fini(struct coral_kit *k)
{
	if (k->ev_tick)
		event_free(k->ev_tick);
	coral_selfq_free(k->selfq);
	if (k->net)
		coral_net_free(k->net);
	free(k->waits);
	free(k->wait_used);
	memset(k, 0, sizeof(*k));
}
