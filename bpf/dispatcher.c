// SPDX-License-Identifier: BSD-3-Clause
//
// The dispatcher: an sk_lookup program. The kernel runs it for every new TCP
// connection and every UDP datagram that has no connected socket, before its
// own socket lookup. It finds the binding with the longest matching prefix for
// (protocol, local address, local port) and then either hands the packet to
// the socket registered for the binding's destination, or refuses it.
//
// The layout of every map is mirrored in src/layout.ts; change both together
// and bump LAYOUT_VERSION there.
//
// Built twice (scripts/setup). The full program needs Linux 5.17. Built with
// -DTUBULAR_COMPAT, the same source makes the compat program, for Linux 5.10:
// the walk is unrolled instead of run in bpf_loop (5.17), the clock
// bpf_ktime_get_ns instead of the coarse one (5.11), and a question from
// tubectl explain is told apart without ctx->ingress_ifindex (5.17). The
// maps are the same, so switching is a program swap (tubectl upgrade).

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10

#define MAX_DESTINATIONS 4096
// Sockets per destination: the members of one SO_REUSEPORT group. The
// kernel removes a socket from the map when it closes; the program takes
// the first member still there, and the kernel's reuseport selection then
// spreads connections over the group.
#define SOCKET_SLOTS 8

// The control plane writes multi-byte words in host order and the filters
// assume little-endian words (src/layout.ts checks the same at run time).
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the map layout assumes a little-endian host");

#define ACTION_STEER 1
#define ACTION_REJECT 2
// Counts what it matches and decides nothing: the walk goes on as if it
// were not there (HTTPS-only, observed before it is switched to reject).
#define ACTION_OBSERVE 3

// A binding's key: exact-match, with the address already masked to prefixlen.
// Looking up "the longest prefix" is then one hash lookup per prefix length
// that is in use, longest first (see `lengths` below). All padding is zero.
struct binding_key {
	__u8 protocol;  // IPPROTO_TCP or IPPROTO_UDP
	__u8 family;    // AF_INET or AF_INET6: an IPv4 prefix never matches IPv6
	__u8 prefixlen; // 0-32 or 0-128
	__u8 pad0;
	__u16 port; // host byte order; 0 means every port
	__u16 pad1;
	__u32 addr[4]; // network byte order, host bits zero; IPv4 uses addr[0]
};

_Static_assert(sizeof(struct binding_key) == 24, "the walk writes a key as three words");

struct binding_value {
	__u32 destination; // index into sockets / destination_metrics
	__u16 action;      // ACTION_STEER, ACTION_REJECT or ACTION_OBSERVE
	__u16 pad;
	__u32 stat;        // index into binding_stats: this binding's traffic
	__u32 place;       // not read here: where the control plane's set had
	                   // this binding when it wrote the value (a guess it
	                   // checks against the key when it next compares sets)
};

// Every binding's traffic: how many connections and datagrams it decided
// (or, for an observe binding, matched), and when it last did. One shared
// entry per binding, whatever the number of CPUs: 16 bytes, 16 MiB for a
// million bindings. The time is in ticks of now_ticks() below, written
// only when it changes; 0 means never. `epoch` changes each
// time the entry is given to a new binding, so that the sources sampled
// for an earlier binding are never taken for its.
struct binding_stat {
	__u64 hits;
	__u32 last_hit;
	__u32 epoch;
};

// Where the traffic of observe and reject bindings comes from: counts per
// source block (IPv4 /24, IPv6 /48) of the binding, in an LRU hash of
// bounded size, so that a scan from a million addresses evicts old blocks
// instead of growing the table. Steer bindings are never sampled.
#define MAX_SOURCES 131072

struct source_key {
	__u32 stat;    // the binding's stat index ...
	__u32 epoch;   // ... and its epoch
	__u32 family;  // AF_INET or AF_INET6
	__u32 addr[4]; // the remote address, network order, masked to its block
};

struct source_value {
	__u64 hits;
	__u64 last_seen; // as binding_stat.last_hit
};

#define MAX_BINDINGS (1 << 20)

// Two filters tell the program which hash lookups cannot match, so it skips
// them. The control plane keeps both a superset of the bindings in force.
//
// `lengths`: which prefix lengths are in use, per (protocol, port). Bit n of
// v4 set means some IPv4 binding with this protocol and port has prefix
// length n; v6[n / 64] bit n % 64 likewise for IPv6. Index:
// (tcp ? 0 : 1) << 16 | port. A port nobody binds costs no lookup at all.
struct lengths {
	__u64 v4;
	__u64 v6[3];
};

#define LENGTHS_ENTRIES (2 << 16)

// `blocks`: which prefix lengths have a binding near the address. Bindings
// of length 16-23 (IPv4) are filed under their /16, 24-32 under their /24;
// IPv6 32-47 under the /32, 48-64 under the /48, 65-96 under the /64, 97-128
// under the /96. Each block hashes to one u64: bit i of its low half means
// "length first + i has a port-specific binding in some block hashing
// here", of its high half the same for port 0. Shorter bindings are always
// tried. A miss far from every binding costs no hash lookup; a hit usually
// one, and a port-0 hit does not first try the port.
#define BLOCK_BITS 20
#define BLOCK_ENTRIES (1 << BLOCK_BITS)
#define BLOCK_MUL 0x9e3779b1U
#define BLOCK_FIN 0x2c1b3c6dU

struct destination_metrics {
	__u64 lookups; // packets matched to this destination
	__u64 misses;  // ... that found no socket registered (refused)
	__u64 errors;  // ... whose socket could not take them (refused)
};

// Generations. A generation is a binding set with its two filters: three
// inner maps, in slot g of the three outer arrays below. `generation`
// names the slot in force. A replace builds the other slot completely,
// then flips `generation` with one update: the program reads it once, so
// each run sees exactly one generation, set and filters together. The
// previous generation stays whole in its slot, so a rollback is one flip.
#define GENERATIONS 2

// The binding set. The kernel does not hold an inner hash map to the
// template's max_entries, so each set is sized to its contents (up to
// MAX_BINDINGS, enforced by src/layout.ts) and preallocated: filling a
// preallocated map is about twice as fast as allocating each element. The
// template is only a shape (libbpf creates and drops one while loading),
// hence one entry.
struct bindings_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct binding_key));
	__uint(value_size, sizeof(struct binding_value));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, GENERATIONS);
	__type(key, __u32);
	__array(values, struct bindings_inner);
} bindings SEC(".maps");

// The filters: same shape in every generation, so the verifier still
// inlines their lookups.
struct lengths_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LENGTHS_ENTRIES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct lengths));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, GENERATIONS);
	__type(key, __u32);
	__array(values, struct lengths_inner);
} lengths SEC(".maps");

struct blocks_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BLOCK_ENTRIES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u64));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, GENERATIONS);
	__type(key, __u32);
	__array(values, struct blocks_inner);
} blocks SEC(".maps");

// The slot of the generation in force.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} generation SEC(".maps");

// Mmapable: the control plane zeroes a load's new entries and reads
// counters through a shared mapping, a copy instead of a syscall each.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BINDINGS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct binding_stat);
} binding_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SOURCES);
	__type(key, struct source_key);
	__type(value, struct source_value);
} sources SEC(".maps");

// Key: destination id * SOCKET_SLOTS + slot.
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, MAX_DESTINATIONS * SOCKET_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} sockets SEC(".maps");

// How many socket slots of each destination the control plane filled,
// from slot 0 (it fills a group's members in order and empties the rest).
// A sockmap lookup is a call, so the program tries only these. The kernel
// empties a slot when its socket closes without lowering this, and a
// writer raises it before it fills slots and lowers it after it empties
// them: it may be higher than needed (a lookup that misses), never lower.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_DESTINATIONS);
	__type(key, __u32);
	__type(value, __u32);
} socket_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_DESTINATIONS);
	__type(key, __u32);
	__type(value, struct destination_metrics);
} destination_metrics SEC(".maps");

// Each CPU's last reading of the clock (see now_ticks), and the jiffies
// (shifted) when it was taken. Derived, never read by the control plane.
struct clock_cache {
	__u32 gate;
	__u32 ticks;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct clock_cache);
} clock SEC(".maps");

// For the control plane only. Slot 0: the layout version it wrote when it
// created the state, compared against the code's own before anything is
// changed. Slot 1: the next free stat index (every index either generation
// uses is below it). Slot 2: non-zero while a writer is part-way through a
// change; the next writer then recomputes everything derived from the
// binding sets. Slot 3: whether the journal (a map of the control plane)
// holds every key whose binding differs between the generations. Slot 4:
// the next epoch a binding_stat is given. Slots 5 + 5g .. 9 + 5g:
// generation g's number, when it was applied (ms since the epoch), a
// digest of the set a replace wrote (0: changed since), a digest of the
// file it was read from and the number of bindings in it. Slot 15: how
// many writes have begun (each writer adds one before it changes anything).
// Slot 16: 1 from a flip until a writer has waited for the programs that
// may still run with the generation it put out of force.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 7 + 5 * GENERATIONS);
	__type(key, __u32);
	__type(value, __u64);
} meta SEC(".maps");

#ifndef TUBULAR_COMPAT
// 1 if x is non-zero, else 0, without a branch.
static __always_inline __u64 nonzero(__u64 x)
{
	return (x | (0 - x)) >> 63;
}

// Index of the highest set bit of a non-zero x. Branch-free on purpose: BPF
// has no clz, and a branchy version multiplies the paths the verifier walks.
static __always_inline __u32 high_bit(__u64 x)
{
	__u64 n, b;

	n = nonzero(x >> 32) << 5; x >>= n;
	b = nonzero(x >> 16) << 4; x >>= b; n += b;
	b = nonzero(x >> 8) << 3; x >>= b; n += b;
	b = nonzero(x >> 4) << 2; x >>= b; n += b;
	b = nonzero(x >> 2) << 1; x >>= b; n += b;
	return n + (x >> 1);
}
#endif

// The first `bits` bits of a network-order word, in network order. (A
// branch-free version made the verifier's work more than double.)
static __always_inline __u32 mask_word(__u32 word, __s32 bits)
{
	if (bits <= 0)
		return 0;
	if (bits >= 32)
		return word;
	return bpf_htonl(bpf_ntohl(word) & ~((1U << (32 - bits)) - 1));
}

// The state of one longest-prefix walk, shared with the bpf_loop callback.
// The walk runs in bpf_loop so that the verifier checks one step once,
// however many prefix lengths are in use (the compat program: see walk_word).
struct walk {
	void *map;     // the binding set, looked up once: see dispatcher()
	// The key is written as whole words: the verifier then knows an earlier
	// key is dead, and does not tell apart walks that differ only in it
	// (on 6.18, a seventh of the steps to verify the full program).
	union {
		struct binding_key key;
		__u64 words[3];
	};
	__u64 head;    // the key's first word: protocol and family
	__u32 ip[4];   // the packet's local address, network byte order
	__u64 spec;    // lengths left to try with the packet's port ...
	__u64 any;     // ... and with port 0, for prefix lengths base..base+63
	__u32 base;
	__u16 port;
	__u16 found;
	struct binding_value result;
	__u32 observed; // an observe binding matched first ...
	__u32 observe;  // ... and this is its stat index
};

// An observe binding decides nothing: note the first (the longest match,
// the one an operator would switch to reject) and carry on.
static __always_inline struct binding_value *seen(struct walk *w, struct binding_value *val)
{
	if (!val || val->action != ACTION_OBSERVE)
		return val;
	if (!w->observed) {
		w->observed = 1;
		w->observe = val->stat;
	}
	return NULL;
}

// The lengths bound in the block of an address (see `blocks`); a, b, c are
// the first three words of the address, host order, masked to the block.
// src/blocks.ts computes the same hash.
static __always_inline __u64 block(void *blocks, __u32 protocol, __u32 family, __u32 level,
				   __u32 a, __u32 b, __u32 c)
{
	__u32 h = (protocol | family << 8 | level << 16) * BLOCK_MUL;
	__u64 *bits;

	h = (h ^ a) * BLOCK_MUL;
	h = (h ^ b) * BLOCK_MUL;
	h = (h ^ c) * BLOCK_MUL;
	h = (h ^ (h >> 15)) * BLOCK_FIN;
	bits = bpf_map_lookup_elem(blocks, &(__u32){ h >> (32 - BLOCK_BITS) });
	return bits ? *bits : 0;
}

// Try prefix length base + hb, first with the specific port, then with port
// 0. Walking lengths longest first, and preferring the specific port at
// equal length, is the whole precedence rule. Returns 1 on a match; else
// clears the length and returns 0.
static __always_inline long try_length(struct walk *w, __u32 base, __u32 hb, int v6)
{
	struct binding_value *val = NULL;
	__u64 bit = 1ULL << hb;
	__s32 len = base + hb;
	__u64 a01, a23 = 0;

	a01 = mask_word(w->ip[0], len);
	if (v6) {
		a01 |= (__u64)mask_word(w->ip[1], len - 32) << 32;
		a23 = mask_word(w->ip[2], len - 64) | (__u64)mask_word(w->ip[3], len - 96) << 32;
	}
	w->words[1] = a01;
	w->words[2] = a23;
	if (w->spec & bit) {
		w->words[0] = w->head | (__u64)len << 16 | (__u64)w->port << 32;
		val = seen(w, bpf_map_lookup_elem(w->map, &w->key));
	}
	if (!val && (w->any & bit)) {
		w->words[0] = w->head | (__u64)len << 16;
		val = seen(w, bpf_map_lookup_elem(w->map, &w->key));
	}
	if (val) {
		w->result = *val;
		w->found = 1;
		return 1;
	}
	w->spec &= ~bit;
	w->any &= ~bit;
	return 0;
}

#ifndef TUBULAR_COMPAT
// One step: try the longest remaining prefix length. Returns 1 when the walk
// is over (a match, or nothing left).
static __always_inline long step(struct walk *w, int v6)
{
	__u64 todo = w->spec | w->any;

	if (!todo || !w->map)
		return 1;
	return try_length(w, w->base, high_bit(todo), v6);
}

// Past the first two lengths the walk goes on in bpf_loop, so the verifier
// checks one step once however many lengths are in use. IPv4 keeps ip[1..3]
// zero, so the IPv6 step serves both: one callback keeps bpf_loop inlined.
static long walk_step(__u32 index, void *data)
{
	return step(data, 1);
}
#endif

// Walk one 64-bit word of the length bitmaps, which holds `lengths` prefix
// lengths; returns whether it matched. Most lookups need one or two steps.
static __always_inline int walk_word(struct walk *w, __u32 base,
				     __u64 spec, __u64 any, int v6, int lengths)
{
	if (!(spec | any))
		return 0;
	w->base = base;
	w->spec = spec;
	w->any = any;
#ifdef TUBULAR_COMPAT
	// Without bpf_loop: every length the word holds, longest first,
	// unrolled (33 steps for IPv4, 129 for IPv6), so that each length is
	// a constant the compiler folds into its masks. A length not in use
	// costs a bit test; the walk stops when no length is left.
#pragma unroll
	for (int hb = lengths - 1; hb >= 0; hb--) {
		if (!(w->spec | w->any))
			break;
		if ((w->spec | w->any) >> hb & 1 && try_length(w, base, hb, v6))
			break;
	}
#else
	if (!step(w, v6) && !step(w, v6))
		bpf_loop(64, walk_step, w, 0);
#endif
	return w->found;
}

// The IPv6 length bitmaps (words 0-63, 64-127, 128) allowed by the blocks
// of an address: /0-/31 always, then the half `shift` of each block.
static __always_inline void near6(const __u64 b[4], int shift, __u64 out[3])
{
	__u64 x32 = b[0] >> shift & 0xffff, x48 = b[1] >> shift & 0x1ffff;
	__u64 x64 = b[2] >> shift & 0xffffffff, x96 = b[3] >> shift & 0xffffffff;

	out[0] = 0xffffffff | x32 << 32 | (x48 & 0xffff) << 48;
	out[1] = x48 >> 16 | x64 << 1 | x96 << 33;
	out[2] = x96 >> 31;
}

// The clock of last_hit and last_seen: CLOCK_MONOTONIC (coarse) in ticks
// of 2^30 ns (1.07 s), plus one, so that it is a shift. A clock helper is
// a call (8-9 ns with its return on the development machine, more with the
// time read inside it; see docs/PERFORMANCE.md); bpf_jiffies64 is inlined
// into a load. So each CPU keeps the clock it read last, and
// reads it again only once jiffies has moved on by 64 (64-640 ms, by HZ):
// a time stamped may be early by that much, never late.
#define CLOCK_GATE_SHIFT 6

#ifdef TUBULAR_COMPAT
// The same clock, read precisely: the coarse read is Linux 5.11.
#define clock_ns bpf_ktime_get_ns
#else
#define clock_ns bpf_ktime_get_coarse_ns
#endif

static __always_inline __u32 now_ticks(void)
{
	__u32 gate = bpf_jiffies64() >> CLOCK_GATE_SHIFT;
	struct clock_cache *c = bpf_map_lookup_elem(&clock, &(__u32){ 0 });

	if (!c)
		return (clock_ns() >> 30) + 1;
	if (c->gate != gate) {
		c->ticks = (clock_ns() >> 30) + 1;
		c->gate = gate;
	}
	return c->ticks;
}

// One more connection or datagram decided by a binding, and when; returns
// its entry (for the epoch), or NULL.
static __always_inline struct binding_stat *count_hit(__u32 stat, __u32 now)
{
	struct binding_stat *s = bpf_map_lookup_elem(&binding_stats, &stat);

	if (!s)
		return NULL;
	__sync_fetch_and_add(&s->hits, 1);
	if (s->last_hit != now)
		s->last_hit = now;
	return s;
}

// Samples where a connection to an observe or reject binding comes from.
static __always_inline void count_source(struct bpf_sk_lookup *ctx, __u32 stat, struct binding_stat *s, __u32 now)
{
	struct source_key key = { .stat = stat, .family = ctx->family };
	struct source_value one = { .hits = 1, .last_seen = now }, *v;

	if (!s)
		return;
	key.epoch = s->epoch;
	if (ctx->family == AF_INET) {
		key.addr[0] = ctx->remote_ip4 & bpf_htonl(0xffffff00);
	} else {
		key.addr[0] = ctx->remote_ip6[0];
		key.addr[1] = ctx->remote_ip6[1] & bpf_htonl(0xffff0000);
	}
	v = bpf_map_lookup_elem(&sources, &key);
	if (!v) {
		bpf_map_update_elem(&sources, &key, &one, BPF_NOEXIST);
		return;
	}
	__sync_fetch_and_add(&v->hits, 1);
	if (v->last_seen != now)
		v->last_seen = now;
}

// The first socket still registered for a destination, or NULL.
static __always_inline struct bpf_sock *destination_socket(__u32 destination)
{
	struct bpf_sock *sk;
	__u32 slot, *filled = bpf_map_lookup_elem(&socket_slots, &destination);

	if (!filled)
		return NULL;
#pragma unroll
	for (slot = 0; slot < SOCKET_SLOTS; slot++) {
		if (slot >= *filled)
			break;
		sk = bpf_map_lookup_elem(&sockets, &(__u32){ destination * SOCKET_SLOTS + slot });
		if (sk)
			return sk;
	}
	return NULL;
}

// The program's name tells the variants apart (tubectl status): at most 15
// characters.
#ifdef TUBULAR_COMPAT
#define dispatcher dispatch_compat
#endif

SEC("sk_lookup")
int dispatcher(struct bpf_sk_lookup *ctx)
{
	struct walk w = {};
	struct destination_metrics *metrics;
	struct lengths *spec, *any;
	struct bpf_sock *sk;
	void *lengths_map, *blocks_map;
	__u32 zero = 0, index, index_gen, destination, protocol, *gen;
	long err;
	int counted;
	__u32 now;
	struct binding_stat *stat;

	if (ctx->protocol == IPPROTO_TCP)
		index = 0;
	else if (ctx->protocol == IPPROTO_UDP)
		index = 1 << 16;
	else
		return SK_PASS;

	// One generation for the whole run: its set and its filters.
	gen = bpf_map_lookup_elem(&generation, &zero);
	if (!gen)
		return SK_PASS;
	index_gen = *gen & (GENERATIONS - 1);
	w.map = bpf_map_lookup_elem(&bindings, &index_gen);
	lengths_map = bpf_map_lookup_elem(&lengths, &index_gen);
	blocks_map = bpf_map_lookup_elem(&blocks, &index_gen);
	if (!w.map || !lengths_map || !blocks_map)
		return SK_PASS;

	// Prefix lengths bound on this port, and on "every port" (port 0).
	w.port = ctx->local_port;
	spec = bpf_map_lookup_elem(lengths_map, &(__u32){ index | w.port });
	any = bpf_map_lookup_elem(lengths_map, &index);
	if (!spec || !any)
		return SK_PASS;

	protocol = ctx->protocol;
	w.head = protocol | ctx->family << 8;
	if (ctx->family == AF_INET) {
		__u32 a = bpf_ntohl(ctx->local_ip4);
		// ... intersected with the lengths bound near this address: the
		// low half of a block for the port, the high half for port 0.
		__u64 b16 = block(blocks_map, protocol, AF_INET, 16, a & 0xffff0000, 0, 0);
		__u64 b24 = block(blocks_map, protocol, AF_INET, 24, a & 0xffffff00, 0, 0);
		__u64 ns = 0xffff | (b16 & 0xff) << 16 | (b24 & 0x1ff) << 24;
		__u64 na = 0xffff | (b16 >> 32 & 0xff) << 16 | (b24 >> 32 & 0x1ff) << 24;

		w.ip[0] = ctx->local_ip4;
		walk_word(&w, 0, spec->v4 & ns, any->v4 & na, 0, 33);
	} else if (ctx->family == AF_INET6) {
		__u64 b[4], ns[3], na[3];

		w.ip[0] = ctx->local_ip6[0];
		w.ip[1] = ctx->local_ip6[1];
		w.ip[2] = ctx->local_ip6[2];
		w.ip[3] = ctx->local_ip6[3];
		b[0] = block(blocks_map, protocol, AF_INET6, 32, bpf_ntohl(w.ip[0]), 0, 0);
		b[1] = block(blocks_map, protocol, AF_INET6, 48, bpf_ntohl(w.ip[0]), bpf_ntohl(w.ip[1]) & 0xffff0000, 0);
		b[2] = block(blocks_map, protocol, AF_INET6, 64, bpf_ntohl(w.ip[0]), bpf_ntohl(w.ip[1]), 0);
		b[3] = block(blocks_map, protocol, AF_INET6, 96, bpf_ntohl(w.ip[0]), bpf_ntohl(w.ip[1]), bpf_ntohl(w.ip[2]));
		near6(b, 0, ns);
		near6(b, 32, na);
		// Longest first: word 2 holds only /128, then /64-/127, /0-/63.
		walk_word(&w, 128, spec->v6[2] & ns[2], any->v6[2] & na[2], 1, 1) ||
			walk_word(&w, 64, spec->v6[1] & ns[1], any->v6[1] & na[1], 1, 64) ||
			walk_word(&w, 0, spec->v6[0] & ns[0], any->v6[0] & na[0], 1, 64);
	}

	// A question asked with BPF_PROG_TEST_RUN by tubectl explain (no
	// interface, source port 0: never a real packet) is answered but not
	// counted, so asking never makes a binding look live.
#ifdef TUBULAR_COMPAT
	// Without ingress_ifindex: source port 0 from the unspecified address
	// (0.0.0.0 or ::), which explain sends and no real packet has.
	counted = ctx->remote_port || ctx->remote_ip4 || ctx->remote_ip6[0] ||
		  ctx->remote_ip6[1] || ctx->remote_ip6[2] || ctx->remote_ip6[3];
#else
	counted = ctx->ingress_ifindex || ctx->remote_port;
#endif
	now = 0;
	if (w.observed && counted) {
		now = now_ticks();
		count_source(ctx, w.observe, count_hit(w.observe, now), now);
	}

	// No binding: leave the packet to the kernel's own socket lookup.
	if (!w.found)
		return SK_PASS;

	stat = NULL;
	if (counted) {
		if (!now)
			now = now_ticks();
		stat = count_hit(w.result.stat, now);
	}

	// Reject: refuse at the transport layer (TCP reset, ICMP unreachable).
	if (w.result.action == ACTION_REJECT) {
		if (stat)
			count_source(ctx, w.result.stat, stat, now);
		return SK_DROP;
	}

	destination = w.result.destination;
	metrics = bpf_map_lookup_elem(&destination_metrics, &destination);
	if (!metrics)
		return SK_DROP;
	metrics->lookups += counted;

	// A bound destination without a socket refuses: falling through to
	// whatever else listens on the port is how traffic leaks.
	sk = destination_socket(destination);
	if (!sk) {
		metrics->misses += counted;
		return SK_DROP;
	}

	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		metrics->errors += counted;
		return SK_DROP;
	}
	return SK_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
