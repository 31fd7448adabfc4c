-- xdpflow flow records in ClickHouse: Kafka topic -> Kafka engine table ->
-- materialized view -> MergeTree table.
--
-- Every field of schemas/flow.proto's FlowMessage has a column of the same
-- name in xdpflow.flows_kafka and in xdpflow.flows (deploy/deploy_test.go
-- checks this against the Go descriptor, so a field added to flow.proto
-- fails `make test` until it is added here).
--
-- Needs flow.proto in ClickHouse's format_schema_path
-- (/var/lib/clickhouse/format_schemas/ by default; compose.yaml mounts
-- schemas/flow.proto there). The probe and the collector write one
-- FlowMessage per Kafka record with no length prefix (proto.Marshal), so
-- the format is ProtobufSingle: ClickHouse's plain 'Protobuf' format
-- expects varint-length-delimited messages and would misread them.
--
-- compose.yaml runs this file once, on ClickHouse's first start
-- (/docker-entrypoint-initdb.d). Elsewhere:
--   clickhouse-client --multiquery < 01-xdpflow.sql
-- after changing kafka_broker_list below.

CREATE DATABASE IF NOT EXISTS xdpflow;

-- The long-term table. Addresses are stored as IPv6 (IPv4 as ::ffff:a.b.c.d,
-- as the messages carry them); times stay Unix nanoseconds, with two
-- MATERIALIZED second-resolution columns for partitioning and queries.
CREATE TABLE IF NOT EXISTS xdpflow.flows
(
    type Enum8('FLOWUNKNOWN' = 0, 'SFLOW_5' = 1, 'NETFLOW_V5' = 2, 'NETFLOW_V9' = 3, 'IPFIX' = 4, 'XDPFLOW' = 10),
    time_received_ns UInt64,
    sequence_num UInt32,
    sampling_rate UInt64,
    sampler_address IPv6,

    time_flow_start_ns UInt64,
    time_flow_end_ns UInt64,
    bytes UInt64,
    packets UInt64,

    src_addr IPv6,
    dst_addr IPv6,
    etype UInt32,
    proto UInt32,
    src_port UInt32,
    dst_port UInt32,

    in_if UInt32,
    out_if UInt32,
    src_mac UInt64,
    dst_mac UInt64,
    vlan_id UInt32,
    ip_tos UInt32,
    forwarding_status UInt32,
    tcp_flags UInt32,
    icmp_type UInt32,
    icmp_code UInt32,

    src_as UInt32,
    dst_as UInt32,
    next_hop IPv6,
    src_net UInt32,
    dst_net UInt32,
    bgp_next_hop IPv6,

    observation_domain_id UInt32,
    observation_point_id UInt32,

    schema_version UInt32,
    end_reason Enum8('END_REASON_UNSPECIFIED' = 0, 'END_REASON_IDLE_TIMEOUT' = 1, 'END_REASON_ACTIVE_TIMEOUT' = 2,
                     'END_REASON_END_OF_FLOW' = 3, 'END_REASON_FORCED_END' = 4, 'END_REASON_LACK_OF_RESOURCES' = 5),
    l2_bytes UInt64,
    probe_host LowCardinality(String),
    in_if_name LowCardinality(String),
    flow_direction Enum8('FLOW_DIRECTION_UNKNOWN' = 0, 'FLOW_DIRECTION_INGRESS' = 1, 'FLOW_DIRECTION_EGRESS' = 2),
    biflow Bool,
    reverse_bytes UInt64,
    reverse_packets UInt64,
    reverse_l2_bytes UInt64,
    reverse_time_flow_start_ns UInt64,
    reverse_time_flow_end_ns UInt64,
    reverse_tcp_flags UInt32,
    -- Encapsulations: a plain flow has NONE, 0, :: and [] (no tunnel
    -- endpoint is stored as ::).
    tunnel_type Enum8('TUNNEL_TYPE_NONE' = 0, 'TUNNEL_TYPE_MPLS' = 1, 'TUNNEL_TYPE_PPPOE' = 2, 'TUNNEL_TYPE_GRE' = 3,
                      'TUNNEL_TYPE_IPIP' = 4, 'TUNNEL_TYPE_VXLAN' = 5, 'TUNNEL_TYPE_GENEVE' = 6, 'TUNNEL_TYPE_GTPU' = 7),
    tunnel_id UInt32,
    tunnel_src_addr IPv6,
    tunnel_dst_addr IPv6,
    mirror_type Enum8('MIRROR_TYPE_NONE' = 0, 'MIRROR_TYPE_ERSPAN' = 1, 'MIRROR_TYPE_VXLAN' = 2, 'MIRROR_TYPE_GENEVE' = 3, 'MIRROR_TYPE_TZSP' = 4),
    mpls_labels Array(UInt32),
    -- TCP health (--tcp-health): latencies in ns, 0 when not measured.
    client_nw_delay_ns UInt64,
    server_nw_delay_ns UInt64,
    appl_latency_ns UInt64,
    tcp_retransmitted_packets UInt32,
    tcp_out_of_order_packets UInt32,
    tcp_zero_window_packets UInt32,

    -- Derived, not in the message.
    time_flow_start DateTime MATERIALIZED toDateTime(intDiv(time_flow_start_ns, 1000000000)),
    time_received DateTime MATERIALIZED toDateTime(intDiv(time_received_ns, 1000000000))
)
ENGINE = MergeTree
PARTITION BY toDate(time_flow_start)
ORDER BY (time_flow_start, probe_host, proto, src_addr, dst_addr)
TTL time_flow_start + INTERVAL 30 DAY;

-- The Kafka consumer. Reading from it consumes; the materialized view below
-- is its only reader. Addresses arrive as 16 raw bytes: FixedString(16).
CREATE TABLE IF NOT EXISTS xdpflow.flows_kafka
(
    type Enum8('FLOWUNKNOWN' = 0, 'SFLOW_5' = 1, 'NETFLOW_V5' = 2, 'NETFLOW_V9' = 3, 'IPFIX' = 4, 'XDPFLOW' = 10),
    time_received_ns UInt64,
    sequence_num UInt32,
    sampling_rate UInt64,
    sampler_address FixedString(16),

    time_flow_start_ns UInt64,
    time_flow_end_ns UInt64,
    bytes UInt64,
    packets UInt64,

    src_addr FixedString(16),
    dst_addr FixedString(16),
    etype UInt32,
    proto UInt32,
    src_port UInt32,
    dst_port UInt32,

    in_if UInt32,
    out_if UInt32,
    src_mac UInt64,
    dst_mac UInt64,
    vlan_id UInt32,
    ip_tos UInt32,
    forwarding_status UInt32,
    tcp_flags UInt32,
    icmp_type UInt32,
    icmp_code UInt32,

    src_as UInt32,
    dst_as UInt32,
    next_hop FixedString(16),
    src_net UInt32,
    dst_net UInt32,
    bgp_next_hop FixedString(16),

    observation_domain_id UInt32,
    observation_point_id UInt32,

    schema_version UInt32,
    end_reason Enum8('END_REASON_UNSPECIFIED' = 0, 'END_REASON_IDLE_TIMEOUT' = 1, 'END_REASON_ACTIVE_TIMEOUT' = 2,
                     'END_REASON_END_OF_FLOW' = 3, 'END_REASON_FORCED_END' = 4, 'END_REASON_LACK_OF_RESOURCES' = 5),
    l2_bytes UInt64,
    probe_host String,
    in_if_name String,
    flow_direction Enum8('FLOW_DIRECTION_UNKNOWN' = 0, 'FLOW_DIRECTION_INGRESS' = 1, 'FLOW_DIRECTION_EGRESS' = 2),
    biflow Bool,
    reverse_bytes UInt64,
    reverse_packets UInt64,
    reverse_l2_bytes UInt64,
    reverse_time_flow_start_ns UInt64,
    reverse_time_flow_end_ns UInt64,
    reverse_tcp_flags UInt32,
    tunnel_type Enum8('TUNNEL_TYPE_NONE' = 0, 'TUNNEL_TYPE_MPLS' = 1, 'TUNNEL_TYPE_PPPOE' = 2, 'TUNNEL_TYPE_GRE' = 3,
                      'TUNNEL_TYPE_IPIP' = 4, 'TUNNEL_TYPE_VXLAN' = 5, 'TUNNEL_TYPE_GENEVE' = 6, 'TUNNEL_TYPE_GTPU' = 7),
    tunnel_id UInt32,
    tunnel_src_addr FixedString(16),
    tunnel_dst_addr FixedString(16),
    mirror_type Enum8('MIRROR_TYPE_NONE' = 0, 'MIRROR_TYPE_ERSPAN' = 1, 'MIRROR_TYPE_VXLAN' = 2, 'MIRROR_TYPE_GENEVE' = 3, 'MIRROR_TYPE_TZSP' = 4),
    mpls_labels Array(UInt32),
    client_nw_delay_ns UInt64,
    server_nw_delay_ns UInt64,
    appl_latency_ns UInt64,
    tcp_retransmitted_packets UInt32,
    tcp_out_of_order_packets UInt32,
    tcp_zero_window_packets UInt32
)
ENGINE = Kafka
SETTINGS
    kafka_broker_list = 'kafka:9092',
    kafka_topic_list = 'xdpflow-flows',
    kafka_group_name = 'clickhouse-xdpflow',
    kafka_format = 'ProtobufSingle',
    kafka_schema = 'flow:FlowMessage',
    kafka_num_consumers = 1,
    kafka_skip_broken_messages = 100;

-- Kafka -> MergeTree. The addresses go from 16 raw bytes to IPv6 through
-- their text form (IPv6NumToString takes FixedString(16); toIPv6 parses),
-- which is defined for every 16-byte value, zero included.
CREATE MATERIALIZED VIEW IF NOT EXISTS xdpflow.flows_mv TO xdpflow.flows AS
SELECT
    type,
    time_received_ns,
    sequence_num,
    sampling_rate,
    toIPv6(IPv6NumToString(sampler_address)) AS sampler_address,
    time_flow_start_ns,
    time_flow_end_ns,
    bytes,
    packets,
    toIPv6(IPv6NumToString(src_addr)) AS src_addr,
    toIPv6(IPv6NumToString(dst_addr)) AS dst_addr,
    etype,
    proto,
    src_port,
    dst_port,
    in_if,
    out_if,
    src_mac,
    dst_mac,
    vlan_id,
    ip_tos,
    forwarding_status,
    tcp_flags,
    icmp_type,
    icmp_code,
    src_as,
    dst_as,
    toIPv6(IPv6NumToString(next_hop)) AS next_hop,
    src_net,
    dst_net,
    toIPv6(IPv6NumToString(bgp_next_hop)) AS bgp_next_hop,
    observation_domain_id,
    observation_point_id,
    schema_version,
    end_reason,
    l2_bytes,
    probe_host,
    in_if_name,
    flow_direction,
    biflow,
    reverse_bytes,
    reverse_packets,
    reverse_l2_bytes,
    reverse_time_flow_start_ns,
    reverse_time_flow_end_ns,
    reverse_tcp_flags,
    tunnel_type,
    tunnel_id,
    toIPv6(IPv6NumToString(tunnel_src_addr)) AS tunnel_src_addr,
    toIPv6(IPv6NumToString(tunnel_dst_addr)) AS tunnel_dst_addr,
    mirror_type,
    mpls_labels,
    client_nw_delay_ns,
    server_nw_delay_ns,
    appl_latency_ns,
    tcp_retransmitted_packets,
    tcp_out_of_order_packets,
    tcp_zero_window_packets
FROM xdpflow.flows_kafka;
