// SPDX-License-Identifier: BSD-3-Clause
//
// What the data-plane benchmark measures the dispatcher against. The floor:
// an sk_lookup program that does nothing, so whatever it costs per run is the
// cost of running any program at all. Then the kernel's parts of a lookup,
// each alone, so that a reader sees what this machine charges for them
// before any code of ours runs: a call, a hash-map lookup, the hand-over of
// a socket. bench/parts.ts subtracts the floor and prints them.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// Calls and lookups are repeated, so that one run holds enough of them to
// stand out of the floor's noise; bench/parts.ts divides by this.
#define REPEAT 8

// Keys and values shaped as the dispatcher's binding set (binding_key, 24
// bytes; binding_value, 16 bytes), and an 8-byte key to compare. The bench
// fills each with as many keys as its binding set has.
struct key24 {
	__u32 w[6];
};

struct key8 {
	__u32 w[2];
};

struct value16 {
	__u32 w[4];
};

#define HASH_ENTRIES 131072

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HASH_ENTRIES);
	__type(key, struct key24);
	__type(value, struct value16);
} hash24 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HASH_ENTRIES);
	__type(key, struct key8);
	__type(value, struct value16);
} hash8 SEC(".maps");

// Slot 0 holds a listening TCP socket on 127.0.0.1.
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} one_socket SEC(".maps");

SEC("sk_lookup")
int floor_prog(struct bpf_sk_lookup *ctx)
{
	return SK_PASS;
}

// A helper that does no work and that the verifier does not inline: what a
// call and its return cost.
SEC("sk_lookup")
int calls(struct bpf_sk_lookup *ctx)
{
#pragma unroll
	for (int i = 0; i < REPEAT; i++)
		bpf_get_numa_node_id();
	return SK_PASS;
}

// The key is the bench's probe, with the packet's port in its first word;
// a lookup that does not find it refuses, so the bench can check that
// every lookup it times found its key.
SEC("sk_lookup")
int lookups24(struct bpf_sk_lookup *ctx)
{
	struct key24 key = { .w = { ctx->local_port, 1, 2, 3, 4, 5 } };

#pragma unroll
	for (int i = 0; i < REPEAT; i++)
		if (!bpf_map_lookup_elem(&hash24, &key))
			return SK_DROP;
	return SK_PASS;
}

SEC("sk_lookup")
int lookups8(struct bpf_sk_lookup *ctx)
{
	struct key8 key = { .w = { ctx->local_port, 1 } };

#pragma unroll
	for (int i = 0; i < REPEAT; i++)
		if (!bpf_map_lookup_elem(&hash8, &key))
			return SK_DROP;
	return SK_PASS;
}

// Take the socket from the sockmap and give it back: the verifier insists
// on the release of what a lookup returns.
SEC("sk_lookup")
int take_socket(struct bpf_sk_lookup *ctx)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(&one_socket, &(__u32){ 0 });

	if (!sk)
		return SK_DROP;
	bpf_sk_release(sk);
	return SK_PASS;
}

// ... and assign it: the hand-over every hit of the dispatcher ends with.
SEC("sk_lookup")
int hand_over(struct bpf_sk_lookup *ctx)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(&one_socket, &(__u32){ 0 });
	long err;

	if (!sk)
		return SK_DROP;
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	return err ? SK_DROP : SK_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
