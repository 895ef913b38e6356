// SPDX-License-Identifier: BSD-3-Clause
//
// The floor of the data-plane benchmark: an sk_lookup program that does
// nothing. Whatever it costs per run is the cost of running any program at
// all, so the dispatcher is reported next to it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_lookup")
int floor_prog(struct bpf_sk_lookup *ctx)
{
	return SK_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
