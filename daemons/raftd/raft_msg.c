/* raftd's codec (see raft_msg.h). */
#include "raft_msg.h"

#include "codec.h"
#include "errors.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const struct coral_codec_type raft_types[] = {
	{MSG_RAFT, &coral__raft_message__descriptor, "raft"},
	{MSG_BEAT, &coral__raft_beat__descriptor, "beat"},
	{MSG_FORWARD, &coral__raft_forward__descriptor, "forward"},
	{MSG_FORWARD_RESP, &coral__raft_forward_resp__descriptor, "forward answer"},
};

static const struct coral_codec raft_codec = {"raft", raft_types, CORAL_ARRAY_LEN(raft_types)};

const ProtobufCMessage *raftd_msg_decode(uint8_t type, const uint8_t *data, size_t len, uint64_t *refused)
{
	return coral_codec_decode(&raft_codec, type, data, len, refused);
}

void raftd_msg_free(const void *m) { coral_codec_free(m); }

uint8_t *raftd_msg_pack(const ProtobufCMessage *m, uint8_t *buf, size_t cap, size_t *len)
{
	return coral_codec_pack(m, buf, cap, len);
}

size_t raftd_msg_size(const ProtobufCMessage *m) { return coral_codec_size(m); }

int raft_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len)
{
	*buf = coral_codec_pack(m, NULL, 0, len);
	return *buf ? 0 : CORAL_ENOMEM;
}

Coral__RegCmd *raft_cmd_decode(const uint8_t *data, size_t len)
{
	return (Coral__RegCmd *)coral_codec_decode_as(&raft_codec, &coral__reg_cmd__descriptor, data, len, NULL);
}

void raft_cmd_free(Coral__RegCmd *c) { coral_codec_free(c ? &c->base : NULL); }

Coral__RegSnapshot *raft_snap_decode(const uint8_t *data, size_t len)
{
	return (Coral__RegSnapshot *)coral_codec_decode_as(&raft_codec, &coral__reg_snapshot__descriptor, data, len,
							   NULL);
}

void raft_snap_free(Coral__RegSnapshot *s) { coral_codec_free(s ? &s->base : NULL); }

int raft_msg_encode(const struct raft_msg *m, uint8_t **buf, size_t *len)
{
	Coral__RaftMessage pm = CORAL__RAFT_MESSAGE__INIT;
	pm.type = m->type;
	pm.reject = m->reject;
	pm.transfer = m->transfer;
	pm.from = m->from;
	pm.to = m->to;
	pm.term = m->term;
	pm.index = m->index;
	pm.log_term = m->log_term;
	pm.commit = m->commit;
	pm.hint = m->hint;
	pm.ctx = m->ctx;
	Coral__RaftEntry *es = NULL, **ep = NULL;
	if (m->n_entries) {
		es = calloc(m->n_entries, sizeof(*es));
		ep = calloc(m->n_entries, sizeof(*ep));
		if (es == NULL || ep == NULL) {
			free(es);
			free(ep);
			return CORAL_ENOMEM;
		}
		for (size_t i = 0; i < m->n_entries; i++) {
			coral__raft_entry__init(&es[i]);
			es[i].term = m->entries[i].term;
			es[i].index = m->entries[i].index;
			es[i].type = m->entries[i].type;
			es[i].data.data = m->entries[i].data;
			es[i].data.len = m->entries[i].len;
			ep[i] = &es[i];
		}
		pm.entries = ep;
		pm.n_entries = m->n_entries;
	}
	Coral__RaftSnap sn = CORAL__RAFT_SNAP__INIT;
	if (m->snap) {
		sn.index = m->snap->index;
		sn.term = m->snap->term;
		sn.voters = m->snap->conf.voters;
		sn.learners = m->snap->conf.learners;
		sn.removed = m->snap->conf.removed;
		sn.data.data = m->snap->data;
		sn.data.len = m->snap->len;
		pm.snap = &sn;
	}
	int rc = raft_pack(&pm.base, buf, len);
	free(es);
	free(ep);
	return rc;
}

static int entries_from_pb(const Coral__RaftMessage *pm, struct raft_msg *m)
{
	m->entries = calloc(pm->n_entries, sizeof(*m->entries));
	if (m->entries == NULL)
		return CORAL_ENOMEM;
	for (size_t i = 0; i < pm->n_entries; i++) {
		const Coral__RaftEntry *e = pm->entries[i];
		struct raft_entry *o = &m->entries[i];
		o->term = e->term;
		o->index = e->index;
		o->type = (uint8_t)e->type;
		o->len = (uint32_t)e->data.len;
		if (e->data.len) {
			o->data = malloc(e->data.len);
			if (o->data == NULL)
				return CORAL_ENOMEM;
			memcpy(o->data, e->data.data, e->data.len);
		}
		m->n_entries = i + 1;
	}
	return 0;
}

static int snap_from_pb(const Coral__RaftSnap *ps, struct raft_msg *m)
{
	m->snap = calloc(1, sizeof(*m->snap));
	if (m->snap == NULL)
		return CORAL_ENOMEM;
	m->snap->index = ps->index;
	m->snap->term = ps->term;
	m->snap->conf = (struct raft_conf){ps->voters, ps->learners, ps->removed};
	m->snap->len = ps->data.len;
	if (m->snap->len) {
		m->snap->data = malloc(m->snap->len);
		if (m->snap->data == NULL)
			return CORAL_ENOMEM;
		memcpy(m->snap->data, ps->data.data, m->snap->len);
	}
	return 0;
}

int raft_msg_decode(const uint8_t *data, size_t len, struct raft_msg *m, uint64_t *refused)
{
	memset(m, 0, sizeof(*m));
	Coral__RaftMessage *pm = (Coral__RaftMessage *)raftd_msg_decode(MSG_RAFT, data, len, refused);
	if (pm == NULL)
		return CORAL_EDECODE;
	int rc = 0;
	m->type = (uint8_t)pm->type;
	m->reject = pm->reject;
	m->transfer = pm->transfer;
	m->from = pm->from;
	m->to = pm->to;
	m->term = pm->term;
	m->index = pm->index;
	m->log_term = pm->log_term;
	m->commit = pm->commit;
	m->hint = pm->hint;
	m->ctx = pm->ctx;
	if (pm->type >= RAFT_MSG_NTYPES) {
		rc = CORAL_EDECODE;
		if (refused)
			(*refused)++;
	}
	if (rc == 0 && pm->n_entries)
		rc = entries_from_pb(pm, m);
	if (rc == 0 && pm->snap)
		rc = snap_from_pb(pm->snap, m);
	raftd_msg_free(pm);
	if (rc != 0)
		raft_msg_free(m);
	return rc;
}
