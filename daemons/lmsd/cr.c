/* lmsd's consistent-read port (base_port+4, [cache] cr_direct): a session of another node
 * reads a CR copy of a block straight from this node, which it last saw holding it. A
 * connection begins with a hello (the cluster's name, the session's node and its current
 * incarnation, checked against raftd's view here); before it, nothing is accepted and not a
 * byte of a block is sent, and a node evicted since is refused on its next read. With [tls]
 * on, the port is TLS and the client shows the certificate of the node its hello names. */
#include "lmsd.h"

#include "errors.h"
#include "frame.h"
#include "log.h"
#include "net.h"
#include "util.h"

#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

/* A session of another node asks for a CR copy straight from this node, which it last saw
 * holding the block. This node's current image in S or X is the newest there is (an X holder
 * has the only current image; S holders exist only while no node holds X), so a copy taken
 * now is at least as new as the moment the session asked. A block being changed (X pin) or
 * not held here is refused; the session then takes the full path through its own lmsd. The
 * port carries nothing else: no control request is accepted on it. */
/* A connection's tag once its hello was taken: the node and its incarnation. */
static uint64_t hello_tag(uint32_t node, uint64_t inc) { return (uint64_t)node << 48 | (inc & 0xffffffffffffull); }

/* Whether node is an active member of raftd's view here under incarnation inc: NULL, or why not. */
static const char *not_member(struct lmsd *l, uint32_t node, uint64_t inc, char *why, size_t n)
{
	if (node == 0 || node > CORAL_MAX_NODES || node == l->self)
		return snprintf(why, n, "node %u is not another node of the cluster", node), why;
	struct coral_cluster_view v;
	coral_cluster_read(l->cl, &v);
	for (uint32_t i = 0; i < v.nmembers && i < CORAL_MAX_NODES; i++) {
		const struct coral_member_view *m = &v.members[i];
		if (m->id != node)
			continue;
		if (m->state != CORAL_MEMBER_ACTIVE || (m->incarnation & 0xffffffffffffull) != (inc & 0xffffffffffffull))
			return snprintf(why, n, "node %u under incarnation %llu is not an active member (raftd's view: %s, "
					"incarnation %llu)", node, (unsigned long long)inc,
					coral_member_state_name(m->state), (unsigned long long)m->incarnation), why;
		return NULL;
	}
	return snprintf(why, n, "node %u is not a member", node), why;
}

static void on_hello(struct lmsd *l, struct coral_ipc_conn *conn, const Coral__CtlRequest *req)
{
	const Coral__GcsCrHello *h = req->gcs_cr_hello;
	char why[192];
	const char *no = strcmp(h->cluster ? h->cluster : "", l->d->conf.cluster.name) != 0
				 ? (snprintf(why, sizeof(why), "a hello for cluster '%s', not '%s'", h->cluster ? h->cluster : "",
					     l->d->conf.cluster.name), why)
				 : not_member(l, h->node, h->incarnation, why, sizeof(why));
	/* under TLS the certificate must be the node's the hello names */
	SSL *ssl = coral_ipc_conn_ssl(conn);
	if (no == NULL && ssl != NULL && coral_tls_peer_is(ssl, h->node, why, sizeof(why)) != 0)
		no = why;
	if (no) {
		l->cr_port_refused++;
		coral_ipc_conn_refuse(conn, no);
		return;
	}
	coral_ipc_conn_set_tag(conn, hello_tag(h->node, h->incarnation));
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.sender_node = l->self;
	hdr.sender = (char *)l->d->name;
	hdr.request_id = coral_ctl_request_id(req);
	resp.hdr = &hdr;
	coral_ipc_conn_send(conn, &resp.base);
}

static void on_cr_frame(void *arg, struct coral_ipc_conn *conn, const uint8_t *data, uint32_t len)
{
	struct lmsd *l = arg;
	/* a CR request is a few dozen bytes: decoded on the stack (no malloc, nothing to free);
	 * anything bigger fails to decode and is refused */
	_Alignas(16) uint8_t mem[1024];
	struct coral_pb_arena ar;
	coral_pb_arena_init(&ar, mem, sizeof(mem));
	Coral__CtlRequest *req = coral_ctl_request_decode_in(&ar, data, len);
	uint64_t tag = coral_ipc_conn_tag(conn);
	if (req != NULL && tag == 0 && req->body_case == CORAL__CTL_REQUEST__BODY_GCS_CR_HELLO) {
		on_hello(l, conn, req);
		return;
	}
	if (req == NULL || req->body_case != CORAL__CTL_REQUEST__BODY_GCS_CR_READ || tag == 0) {
		l->cr_port_refused++;
		coral_ipc_conn_refuse(conn, tag == 0 ? "no hello first" : "not a consistent-read request");
		return;
	}
	char why[192];
	if (not_member(l, (uint32_t)(tag >> 48), tag & 0xffffffffffffull, why, sizeof(why))) {
		l->cr_port_refused++;
		coral_ipc_conn_refuse(conn, why);
		return;
	}
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	Coral__GcsCrReadReply r = CORAL__GCS_CR_READ_REPLY__INIT;
	hdr.sender_node = l->self;
	hdr.sender = (char *)l->d->name;
	hdr.request_id = coral_ctl_request_id(req);
	resp.hdr = &hdr;
	uint32_t file = req->gcs_cr_read->file;
	uint64_t block = req->gcs_cr_read->block;
	uint32_t ch = coral_cache_chain(l->cache, file, block);
	/* a fenced node serves no copies: the full path elsewhere gives the current one */
	bool fenced = coral_cluster_fenced(l->cl) || l->escalating;
	coral_cache_lock(l->cache, ch);
	struct coral_buf *b = coral_cache_find(l->cache, file, block, false);
	bool held = b != NULL && b->mode >= CORAL_BL_S && !fenced;
	/* a shared pin keeps sessions from changing the image while the socket copies it
	 * straight out of the buffer (a session wanting X waits those microseconds, as behind
	 * a local reader); the pin goes before this handler returns, so nothing of lmsd's own
	 * ever finds it */
	bool pinned = held && coral_buf_try_pin(b, false);
	/* being changed by an open transaction: a copy of its consistent image (the last
	 * committed), taken under the latch that keeps the image */
	const uint8_t *img = NULL;
	if (pinned)
		r.scn = b->scn;
	else if (held && l->cr_scratch != NULL && (img = coral_cache_clone_of(l->cache, b, &r.scn)) != NULL)
		memcpy(l->cr_scratch, img, l->cache->block_size);
	coral_cache_unlock(l->cache, ch);
	if (pinned || img != NULL) {
		l->cr_direct++;
		r.data.data = img != NULL ? l->cr_scratch
					  : (uint8_t *)coral_cache_data(l->cache, coral_cache_index(l->cache, b));
		r.data.len = l->cache->block_size;
		resp.body_case = CORAL__CTL_RESPONSE__BODY_GCS_CR_READ;
		resp.gcs_cr_read = &r;
	} else {
		l->cr_direct_refused++;
		resp.code = held ? CORAL_EBUSY : CORAL_ENOENT;
		resp.error = held ? "being changed here" : "not held here";
	}
	coral_ipc_conn_send(conn, &resp.base);
	if (pinned)
		coral_cache_unpin(l->cache, b, false);
}

int lmsd_cr_start(struct lmsd *l)
{
	const struct coral_conf *conf = &l->d->conf;
	if (!conf->cache.cr_direct)
		return 0;
	l->cr_scratch = malloc(l->cache->block_size);
	if (l->cr_scratch == NULL)
		return CORAL_ENOMEM;
	char err[256];
	if (conf->tls.enabled) {
		/* the interconnect's certificates: a client shows its node's, signed by the CA */
		l->cr_tls = coral_tls_ctx_from_conf(conf, l->d->node, err, sizeof(err));
		if (l->cr_tls == NULL) {
			log_error("consistent-read port: %s", err);
			return CORAL_ECONFIG;
		}
	}
	struct coral_ipc_server_opts o = {
		.tcp_host = l->d->node->host,
		.tcp_port = (int)(l->d->node->base_port + CORAL_PORT_LMSD_CR),
		.max_frame = (size_t)conf->cluster.max_frame,
		/* a connection per session of the other nodes, closed when idle ([lmsd]
		 * client_idle_ms: the session reconnects), the output bound of lmsd's socket */
		.max_clients = CORAL_CACHE_SESSIONS + 8,
		.out_queue = (size_t)conf->daemon[CORAL_D_LMSD].out_queue,
		.idle_ms = conf->daemon[CORAL_D_LMSD].client_idle_ms,
		.who = "the consistent-read port",
		.limit = "1032 connections",
		.ssl_ctx = l->cr_tls,
		.on_frame = on_cr_frame,
		.arg = l,
	};
	l->cr_srv = coral_ipc_server_new(l->d->base, &o, err, sizeof(err));
	if (l->cr_srv == NULL) {
		log_error("consistent-read port: %s", err);
		return CORAL_ESYS;
	}
	return 0;
}

