// SPDX-License-Identifier: GPL-2.0
//
// nearhost's BPF host routing: tcx ingress programs that move packets between
// pods around the host's IP stack, and leave everything else to it.
//
//   nh_from_pod     on the host end of each pod's veth. A packet from a pod to
//                   another pod of this host is handed straight to that pod's
//                   veth peer (bpf_redirect_peer): no routing, no netfilter, no
//                   second softirq pass through the host namespace. A packet to
//                   a pod of another host (an address in the pod blocks) leaves
//                   by the device and neighbour the kernel's FIB names
//                   (bpf_fib_lookup; bpf_redirect_neigh when no neighbour
//                   entry exists yet).
//   nh_from_uplink  on the host's uplink. A packet from another host for a
//                   pod of this host goes the same way.
//
// Everything else (the host's own addresses, Service IPs, NodePorts, the
// outside world, anything not TCP or UDP, a TTL about to expire) returns
// TC_ACT_OK and is routed by the host stack as before, so netfilter rules
// (kube-proxy's DNAT, masquerade) keep working.
//
// NAT without conntrack lookups: a reply to a connection that netfilter
// translated (a pod talking to a ClusterIP backed by another pod) must go
// back through conntrack, or the client would see the backend's address.
// Both programs therefore remember, in an LRU map, the endpoint (address,
// port, protocol) that will receive the replies of every TCP/UDP flow that
// may be translated: nh_from_pod the pod's own end of a flow it opens towards
// an address outside the pod CIDRs (nh_blocks: a Service, a NodePort, the
// outside); nh_from_uplink the sender's end of a flow that arrives for an
// address that is no local pod (a NodePort DNATed to a pod here). Packets
// towards a remembered endpoint take the stack. A stale entry only costs a flow the fast path; an
// entry evicted while its flow lives (more than 65536 newer flows out of the
// pod CIDRs on this host) would send that flow's replies around conntrack.
//
// Maps are pinned by name (one directory per host network namespace) so the
// CNI plugin, a short-lived process, can fill them and the programs outlive it.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define PACKET_HOST 0
#define TCP_SYN 0x02
#define TCP_ACK 0x10

// An address: IPv4 as ::ffff:a.b.c.d, IPv6 as itself.
struct nh_addr {
	__u8 b[16];
};

// A local pod: the host end of its veth and the MACs its frames carry.
struct nh_pod {
	__u32 ifindex; // the host end; bpf_redirect_peer delivers to its peer
	__u8 pod_mac[6];
	__u8 host_mac[6];
};

struct nh_block_key {
	__u32 prefixlen; // over the 128-bit address above
	struct nh_addr addr;
};

// A pod-side endpoint of a flow that left the pod CIDRs.
struct nh_flow {
	struct nh_addr addr;
	__u16 port; // network order
	__u8 proto;
	__u8 pad;
};

enum nh_stat {
	NH_FROM_POD_TO_POD,      // redirected pod -> local pod
	NH_FROM_UPLINK_TO_POD,   // redirected uplink -> local pod
	NH_STACK_NOT_A_POD,      // destination is no local pod
	NH_STACK_NAT_FLOW,       // reply of a flow that left the pod CIDRs
	NH_STACK_OTHER,          // not IPv4/IPv6 TCP/UDP, TTL 1, not for this host, not routable
	NH_FROM_POD_TO_REMOTE,   // redirected pod -> the uplink, towards a pod of another host
	NH_STAT_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct nh_addr);
	__type(value, struct nh_pod);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nh_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__type(key, struct nh_block_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nh_blocks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nh_flow);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nh_nat_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NH_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nh_stats SEC(".maps");

static __always_inline int count(__u32 stat, int verdict)
{
	__u64 *n = bpf_map_lookup_elem(&nh_stats, &stat);
	if (n)
		*n += 1;
	return verdict;
}

// What the programs need from a packet's headers.
struct nh_pkt {
	struct nh_addr src, dst;
	__u16 sport, dport; // network order
	__u8 proto;
	__u8 v6;
	__u8 tcp_flags;
};

static __always_inline void v4_addr(struct nh_addr *a, __be32 ip)
{
	__builtin_memset(a, 0, sizeof(*a));
	a->b[10] = 0xff;
	a->b[11] = 0xff;
	__builtin_memcpy(&a->b[12], &ip, 4);
}

// Parses Ethernet + IPv4/IPv6 + the TCP/UDP ports. Returns 0 when the packet
// is one the fast path may take.
static __always_inline int parse(struct __sk_buff *skb, struct nh_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	void *l4;

	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->ttl <= 1)
			return -1;
		// Fragments carry no ports.
		if (ip->frag_off & bpf_htons(0x3fff))
			return -1;
		p->proto = ip->protocol;
		p->v6 = 0;
		v4_addr(&p->src, ip->saddr);
		v4_addr(&p->dst, ip->daddr);
		l4 = ip + 1;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->hop_limit <= 1)
			return -1;
		p->proto = ip6->nexthdr;
		p->v6 = 1;
		__builtin_memcpy(&p->src, &ip6->saddr, 16);
		__builtin_memcpy(&p->dst, &ip6->daddr, 16);
		l4 = ip6 + 1;
	} else {
		return -1;
	}
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return -1;
	// TCP and UDP both start with the source and destination ports.
	if (l4 + 4 > end)
		return -1;
	__builtin_memcpy(&p->sport, l4, 2);
	__builtin_memcpy(&p->dport, l4 + 2, 2);
	if (p->proto == IPPROTO_TCP) {
		if (l4 + 14 > end)
			return -1;
		p->tcp_flags = *(__u8 *)(l4 + 13);
	}
	return 0;
}

// Rewrites the frame's MACs and drops the TTL (hop limit) by one, as a
// router would.
static __always_inline int route(struct __sk_buff *skb, struct nh_pkt *p, const __u8 *dmac,
				 const __u8 *smac)
{
	if (bpf_skb_store_bytes(skb, 0, dmac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, smac, 6, 0) < 0)
		return -1;
	if (p->v6) {
		__u8 hl;
		__u32 off = ETH_HLEN + __builtin_offsetof(struct ipv6hdr, hop_limit);
		if (bpf_skb_load_bytes(skb, off, &hl, 1) < 0)
			return -1;
		hl -= 1;
		return bpf_skb_store_bytes(skb, off, &hl, 1, 0);
	}
	// TTL is the high byte of the 16-bit word it shares with the protocol:
	// the checksum changes by that word's difference.
	__u32 off = ETH_HLEN + __builtin_offsetof(struct iphdr, ttl);
	__be16 old, new;
	if (bpf_skb_load_bytes(skb, off, &old, 2) < 0)
		return -1;
	__u8 *b = (__u8 *)&new;
	__builtin_memcpy(&new, &old, 2);
	b[0] -= 1;
	if (bpf_l3_csum_replace(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, check), old, new, 2) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, off, &new, 2, 0);
}

// Remembers `addr`:`port` as an endpoint whose packets must take the stack.
// TCP at its SYN, refreshed by its later packets (an LRU lookup marks the
// entry used); UDP at every packet.
static __always_inline void remember(struct nh_pkt *p, struct nh_addr *addr, __u16 port)
{
	struct nh_flow f = {};
	f.addr = *addr;
	f.port = port;
	f.proto = p->proto;
	__u8 one = 1;
	if (p->proto == IPPROTO_UDP || (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		bpf_map_update_elem(&nh_nat_flows, &f, &one, BPF_ANY);
	else
		bpf_map_lookup_elem(&nh_nat_flows, &f);
}

static __always_inline int is_nat_reply(struct nh_pkt *p)
{
	struct nh_flow f = {};
	f.addr = p->dst;
	f.port = p->dport;
	f.proto = p->proto;
	return bpf_map_lookup_elem(&nh_nat_flows, &f) != 0;
}

static __always_inline int in_pod_blocks(struct nh_addr *a)
{
	struct nh_block_key k = { .prefixlen = 128, .addr = *a };
	return bpf_map_lookup_elem(&nh_blocks, &k) != 0;
}

// A local pod: into its veth's peer, inside the pod.
static __always_inline int to_local_pod(struct __sk_buff *skb, struct nh_pkt *p,
					struct nh_pod *pod, __u32 stat)
{
	// Copy: the map entry may go while the packet is rewritten.
	struct nh_pod to = *pod;
	if (route(skb, p, to.pod_mac, to.host_mac) < 0)
		return count(NH_STACK_OTHER, TC_ACT_OK);
	return count(stat, bpf_redirect_peer(to.ifindex, 0));
}

// A pod of another host: out of the device the kernel's routes (host-gw)
// name, to the neighbour they name; the neighbour table resolves it when
// the FIB has no entry yet.
static __always_inline int to_remote_pod(struct __sk_buff *skb, struct nh_pkt *p)
{
	struct bpf_fib_lookup fib = {};
	fib.ifindex = skb->ingress_ifindex;
	fib.l4_protocol = p->proto;
	fib.sport = p->sport;
	fib.dport = p->dport;
	fib.tot_len = skb->len - ETH_HLEN;
	if (p->v6) {
		fib.family = 10; // AF_INET6
		__builtin_memcpy(fib.ipv6_src, &p->src, 16);
		__builtin_memcpy(fib.ipv6_dst, &p->dst, 16);
	} else {
		fib.family = 2; // AF_INET
		__builtin_memcpy(&fib.ipv4_src, &p->src.b[12], 4);
		__builtin_memcpy(&fib.ipv4_dst, &p->dst.b[12], 4);
	}
	int rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (route(skb, p, fib.dmac, fib.smac) < 0)
			return count(NH_STACK_OTHER, TC_ACT_OK);
		return count(NH_FROM_POD_TO_REMOTE, bpf_redirect(fib.ifindex, 0));
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {};
		if (p->v6) {
			nh.nh_family = 10;
			__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
		} else {
			nh.nh_family = 2;
			nh.ipv4_nh = fib.ipv4_dst;
		}
		if (route(skb, p, fib.dmac, fib.smac) < 0)
			return count(NH_STACK_OTHER, TC_ACT_OK);
		return count(NH_FROM_POD_TO_REMOTE, bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0));
	}
	// Not forwarded (no route, blackhole, MTU, forwarding off): the stack
	// says why, with the right ICMP error.
	return count(NH_STACK_OTHER, TC_ACT_OK);
}

SEC("classifier")
int nh_from_pod(struct __sk_buff *skb)
{
	struct nh_pkt p = {};
	if (skb->pkt_type != PACKET_HOST || parse(skb, &p) < 0)
		return count(NH_STACK_OTHER, TC_ACT_OK);
	if (!in_pod_blocks(&p.dst)) {
		// A flow the pod opens towards an address outside the pod CIDRs
		// (a Service, a NodePort, the outside): netfilter may translate
		// it, so its replies must come back through the stack.
		remember(&p, &p.src, p.sport);
		return count(NH_STACK_NOT_A_POD, TC_ACT_OK);
	}
	if (is_nat_reply(&p))
		return count(NH_STACK_NAT_FLOW, TC_ACT_OK);
	struct nh_pod *pod = bpf_map_lookup_elem(&nh_pods, &p.dst);
	if (pod)
		return to_local_pod(skb, &p, pod, NH_FROM_POD_TO_POD);
	return to_remote_pod(skb, &p);
}

SEC("classifier")
int nh_from_uplink(struct __sk_buff *skb)
{
	struct nh_pkt p = {};
	if (skb->pkt_type != PACKET_HOST || parse(skb, &p) < 0)
		return count(NH_STACK_OTHER, TC_ACT_OK);
	struct nh_pod *pod = bpf_map_lookup_elem(&nh_pods, &p.dst);
	if (!pod) {
		// For the host (a NodePort, say) or routed on: the stack may
		// translate it towards a pod, whose replies to this sender must
		// then come back through the stack too.
		remember(&p, &p.src, p.sport);
		return count(NH_STACK_NOT_A_POD, TC_ACT_OK);
	}
	if (is_nat_reply(&p))
		return count(NH_STACK_NAT_FLOW, TC_ACT_OK);
	return to_local_pod(skb, &p, pod, NH_FROM_UPLINK_TO_POD);
}

char LICENSE[] SEC("license") = "GPL";
