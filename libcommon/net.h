/* The interconnect: persistent TCP connections between the same daemon on every node, on
 * libevent. Each node dials every peer and sends its messages on that outbound connection;
 * it receives on the connections its peers dialed. A connection starts with a hello (cluster,
 * node ids, incarnation, epoch, protocol version) that the acceptor checks and answers; a
 * wrong cluster, version, node or an evicted incarnation is refused with the reason, which
 * the dialer logs and hands to its owner. Failed or lost connections are retried with
 * exponential backoff and jitter. Every peer's send queue is bounded: past it a send is
 * refused as busy and the producer must wait or drop. Payloads above a size are compressed
 * with lz4, unless recent ones to that peer did not compress (then lz4 is skipped for a
 * growing number of payloads, up to 64, and tried again). Per-peer counters: messages,
 * bytes, reconnects, refusals, round-trip time.
 *
 * Wire: a frame is [u32 big-endian length][u8 type][u8 flags][payload], the length counting
 * type, flags and payload. With flag LZ4 the payload is [u32 raw length][lz4 block]. Types
 * below CORAL_NET_APP are the interconnect's own (hello, ack, ping, pong, goodbye). */
#ifndef CORAL_NET_H
#define CORAL_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORAL_NET_VERSION 1
#define CORAL_NET_APP 16          /* first application message type */
#define CORAL_NET_MAX_PEERS 64

struct event_base;
struct coral_net;

/* A message from peer `from`, running as incarnation `inc`. */
typedef void (*coral_net_msg_fn)(void *arg, uint32_t from, uint64_t inc, uint8_t type,
				 const uint8_t *data, size_t len);
/* Our hello to `peer` was refused, or the peer told us to go (code: CORAL_EEVICTED, ...). */
typedef void (*coral_net_refused_fn)(void *arg, uint32_t peer, int code, const char *why);
/* An outbound connection came up (up true) or went down. */
typedef void (*coral_net_link_fn)(void *arg, uint32_t peer, bool up);

struct coral_net_opts {
	const char *cluster;
	const char *daemon;           /* checked in the hello: raftd talks to raftd */
	uint32_t node_id;
	uint64_t incarnation;
	const char *listen_host;
	int listen_port;
	size_t max_frame;
	size_t send_queue;
	size_t compress_above;        /* 0: never */
	int reconnect_min_ms, reconnect_max_ms;
	int ping_interval_ms;
	int connect_timeout_ms;
	uint64_t seed;                /* jitter */
	/* TLS: when ca_file is set, connections use mutual TLS and a peer's certificate must
	 * carry the common name "node<ID>" of the node it claims to be. */
	const char *ca_file, *cert_file, *key_file;
	coral_net_msg_fn on_msg;
	coral_net_refused_fn on_refused;
	coral_net_link_fn on_link;
	uint64_t (*epoch)(void *arg);
	void *arg;
};

struct coral_net_peer_stats {
	bool known, out_up, in_up;
	uint64_t incarnation;         /* of the peer's current inbound connection */
	uint64_t min_incarnation;     /* lower ones are refused and their messages dropped */
	uint64_t msgs_out, msgs_in, bytes_out, bytes_in;
	uint64_t reconnects, connect_failures, refused, busy, dropped;
	uint64_t compressed;
	uint64_t not_compressed;      /* above the threshold but sent as they were: lz4 did not
				       * shrink them, or recent ones to this peer (skipped) */
	uint64_t rtt_us, rtt_avg_us;  /* last and smoothed (0: not measured yet) */
	size_t queued;
	char last_error[160];
};

struct coral_net *coral_net_new(struct event_base *base, const struct coral_net_opts *o,
				char *err, size_t errsz);
void coral_net_free(struct coral_net *net);

/* Adds or updates a peer's address; the node dials it from now on. */
int coral_net_add_peer(struct coral_net *net, uint32_t id, const char *host, int port);
void coral_net_remove_peer(struct coral_net *net, uint32_t id);

/* Queues a message to a peer. CORAL_ENOTCONN when the connection is not up (the message is
 * dropped and counted), CORAL_EBUSY past the send queue bound, CORAL_ETOOBIG, CORAL_ENOENT. */
int coral_net_send(struct coral_net *net, uint32_t to, uint8_t type, const void *data, size_t len);

/* A new incarnation (after an eviction): every outbound connection is redialed with it. */
void coral_net_set_incarnation(struct coral_net *net, uint64_t inc);

/* Refuses incarnations of `id` below min from now on: a connection from one is told it is
 * evicted and closed, and messages still buffered from it are dropped. */
void coral_net_fence_peer(struct coral_net *net, uint32_t id, uint64_t min_incarnation);

void coral_net_peer_stats(const struct coral_net *net, uint32_t id, struct coral_net_peer_stats *st);

/* Options for `daemon`'s interconnect from the configuration: it listens on the node's host
 * at base_port + port_offset; queues and timing come from [interconnect], mutual TLS from
 * [tls] with %n resolved for this node (files holds the paths and must outlive the net).
 * Callbacks are left for the caller. CORAL_ECONFIG with the reason in err. */
struct coral_conf;
struct coral_node_conf;
struct coral_net_files {
	char ca[4096], cert[4096], key[4096];
};
int coral_net_opts_from_conf(struct coral_net_opts *o, struct coral_net_files *files,
			     const struct coral_conf *conf, const struct coral_node_conf *node,
			     const char *daemon, int port_offset, uint64_t incarnation, uint64_t seed,
			     char *err, size_t errsz);
/* Adds every configured node but this one as a peer, at base_port + port_offset. */
/* A TLS context with this node's certificate ([tls], %n resolved) that requires the peer's
 * and verifies it against the cluster's CA: for the node's other ports (raftd's HTTPS,
 * lmsd's consistent-read port). NULL with err when [tls] is off or a file does not load. */
typedef struct ssl_ctx_st SSL_CTX;
SSL_CTX *coral_tls_ctx_from_conf(const struct coral_conf *conf, const struct coral_node_conf *node, char *err,
				 size_t errsz);
/* Whether the peer of a TLS connection showed the certificate of node id (its common name
 * node<ID>; the handshake has checked that the cluster's CA signed it): 0, or CORAL_EPERM
 * and why. */
typedef struct ssl_st SSL;
int coral_tls_peer_is(SSL *ssl, uint32_t id, char *why, size_t whysz);

void coral_net_add_conf_peers(struct coral_net *net, const struct coral_conf *conf, uint32_t self,
			      int port_offset);

#endif
