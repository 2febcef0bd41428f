"""Provider aws: a VPC, a members-only security group, placement-grouped instances per pool.

Every AWS resource goes through one explicit regional provider (the spec's
region), never the ambient default, so a stray AWS_REGION cannot move a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls
import yaml

from ringfleet.providers.aws import AWS_LOGIN_USER
from ringfleet.spec import ClusterSpec, ResolvedPool
from stacks.exports import Made
from stacks.options import stateful_opts

# Tag keys on every taggable resource, so a cluster can be found (and billed) by tag.
TAG_CLUSTER = "cluster"
TAG_POOL = "pool"
TAG_ENV = "env"
TAG_MANAGED_BY = "managed-by"
MANAGED_BY = "ringfleet"

# A newer image from the lookup must not replace running nodes (or fail on the
# protected NFS head); roll nodes on purpose by setting the pool's `image`.
AMI_IGNORE_CHANGES = ["ami"]

# Debian's own AWS account publishes the official Debian AMIs. GPU pools use the same
# image as CPU pools: the roles are pinned to Debian 12, and the nvidia role installs
# the driver, CUDA and NCCL from NVIDIA's Debian 12 repository.
DEBIAN_AMI_OWNER = "136693071363"
DEBIAN_AMI_NAME = "debian-12-amd64-*"
AMI_ARCHITECTURE = "x86_64"

# The inventory logs in to aws nodes as this user (the aws provider's host_vars);
# cloud-init makes it with the stack's key (Debian's default user is `admin` too).
LOGIN_USER = AWS_LOGIN_USER

# The NFS head node when storage is nfs and no server is named. The spec has no
# fields for its size, so it is fixed here.
NFS_HEAD_INSTANCE_TYPE = "m7i.xlarge"
NFS_HEAD_VOLUME_GB = 500

ALL_PROTOCOLS = "-1"
ANYWHERE_V4 = "0.0.0.0/0"
ANYWHERE_V6 = "::/0"
ROOT_VOLUME_TYPE = "gp3"


def cluster_tags(spec: ClusterSpec, pool: str | None = None, name: str | None = None) -> dict:
    """Tags of one resource: cluster, env, managed-by, and pool/Name where they apply."""
    tags = {
        TAG_CLUSTER: spec.cluster.name,
        TAG_ENV: spec.env,
        TAG_MANAGED_BY: MANAGED_BY,
    }
    if pool is not None:
        tags[TAG_POOL] = pool
    if name is not None:
        tags["Name"] = name
    return tags


def ami_lookup(parent: pulumi.Resource) -> pulumi.Output[str]:
    """The newest official Debian 12 AMI, for every pool and the NFS head."""
    return aws.ec2.get_ami_output(
        most_recent=True,
        owners=[DEBIAN_AMI_OWNER],
        filters=[
            aws.ec2.GetAmiFilterArgs(name="name", values=[DEBIAN_AMI_NAME]),
            aws.ec2.GetAmiFilterArgs(name="architecture", values=[AMI_ARCHITECTURE]),
        ],
        # The parent carries the regional provider to the lookup.
        opts=pulumi.InvokeOptions(parent=parent),
    ).id


def node_user_data(public_key: str, ssh_port: int) -> str:
    """cloud-config of a pool node: the login user with the cluster key, and the SSH port.

    cloud-init's keys-to-console module prints the host public keys on the console by
    default (the Debian 12 AMI keeps it on), where `ringfleet trust` checks scanned keys.
    It is not asked for here: a change of user data stops and starts running instances.
    """
    doc: dict = {
        "users": [
            "default",
            {
                "name": LOGIN_USER,
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "ssh_authorized_keys": [public_key],
            },
        ],
    }
    if ssh_port != 22:
        # The security group only admits the spec's port, so sshd must move before
        # the first Ansible connection.
        doc["write_files"] = [
            {"path": "/etc/ssh/sshd_config.d/ringfleet-port.conf", "content": f"Port {ssh_port}\n"}
        ]
        doc["runcmd"] = [["systemctl", "restart", "ssh"]]
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


def nfs_head_user_data(export: str, client_cidr: str) -> str:
    """cloud-config of the NFS head: export `export` to the VPC; no Ansible play needed."""
    doc = {
        "package_update": True,
        "packages": ["nfs-kernel-server"],
        "write_files": [
            {
                "path": "/etc/exports.d/ringfleet.exports",
                "content": f"{export} {client_cidr}(rw,sync,no_subtree_check)\n",
            }
        ],
        "runcmd": [
            ["mkdir", "-p", export],
            # Jobs of any user write checkpoints here; the sticky bit keeps them apart.
            ["chmod", "1777", export],
            ["exportfs", "-ra"],
            ["systemctl", "enable", "--now", "nfs-server"],
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


@dataclass
class ClusterNetworkArgs:
    cidr: str
    """The VPC's CIDR, also its one subnet's (the spec's network.subnet)."""
    admin_cidr: str
    """The only network SSH is admitted from."""
    ssh_port: int
    """The SSH port nodes listen on."""
    tags: dict
    """Tags shared by the network resources."""


class ClusterNetwork(pulumi.ComponentResource):
    """VPC, one public subnet with a route to the internet, and the members' security group.

    One subnet, because a cluster placement group lives in one availability zone.
    """

    def __init__(
        self, name: str, args: ClusterNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("ringfleet:aws:ClusterNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={**args.tags, "Name": name},
            opts=child,
        )
        self.gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags={**args.tags, "Name": name}, opts=child
        )
        self.route_table = aws.ec2.RouteTable(
            f"{name}-rt",
            vpc_id=self.vpc.id,
            routes=[
                aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE_V4, gateway_id=self.gateway.id)
            ],
            tags={**args.tags, "Name": name},
            opts=child,
        )
        self.subnets = [
            aws.ec2.Subnet(
                f"{name}-subnet",
                vpc_id=self.vpc.id,
                cidr_block=args.cidr,
                tags={**args.tags, "Name": name},
                opts=child,
            )
        ]
        self.route_associations = [
            aws.ec2.RouteTableAssociation(
                f"{name}-rta-{i}", subnet_id=s.id, route_table_id=self.route_table.id, opts=child
            )
            for i, s in enumerate(self.subnets)
        ]
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-members",
            description="ringfleet: all traffic among members; SSH only from the admin network",
            vpc_id=self.vpc.id,
            ingress=[
                # MPI, NCCL and NFS use ports chosen at run time: members trust each other.
                aws.ec2.SecurityGroupIngressArgs(
                    description="all traffic among cluster members",
                    protocol=ALL_PROTOCOLS,
                    from_port=0,
                    to_port=0,
                    self=True,
                ),
                aws.ec2.SecurityGroupIngressArgs(
                    description="SSH from the admin network",
                    protocol="tcp",
                    from_port=args.ssh_port,
                    to_port=args.ssh_port,
                    cidr_blocks=[args.admin_cidr],
                ),
            ],
            # Nodes install packages and wheels from the internet.
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    description="everything out",
                    protocol=ALL_PROTOCOLS,
                    from_port=0,
                    to_port=0,
                    cidr_blocks=[ANYWHERE_V4],
                    ipv6_cidr_blocks=[ANYWHERE_V6],
                )
            ],
            tags={**args.tags, "Name": f"{name}-members"},
            opts=child,
        )
        self.subnet_ids = [s.id for s in self.subnets]
        self.register_outputs(
            {
                "vpcId": self.vpc.id,
                "subnetIds": self.subnet_ids,
                "securityGroupId": self.security_group.id,
            }
        )


@dataclass
class SshKeyArgs:
    tags: dict
    """Tags of the EC2 key pair."""
    algorithm: str = "ED25519"
    """ED25519, or RSA (4096 bits) for images whose sshd predates ed25519."""


class SshKey(pulumi.ComponentResource):
    """The cluster's SSH key: generated here, public half registered as an EC2 key pair."""

    def __init__(self, name: str, args: SshKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ringfleet:aws:SshKey", name, None, opts)
        self.private_key = tls.PrivateKey(
            f"{name}-key",
            algorithm=args.algorithm,
            rsa_bits=4096 if args.algorithm == "RSA" else None,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.key_pair = aws.ec2.KeyPair(
            f"{name}-keypair",
            public_key=self.private_key.public_key_openssh,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.public_key_openssh = self.private_key.public_key_openssh
        # Secret already by the tls provider's schema; wrapped again so it never depends on that.
        self.private_key_openssh = pulumi.Output.secret(self.private_key.private_key_openssh)
        self.register_outputs({"keyName": self.key_pair.key_name})


@dataclass
class SharedStorageArgs:
    kind: str
    """efs, or nfs (an NFS head node unless `server` names one)."""
    server: str | None
    """The spec's storage.server: an NFS server that already exists."""
    export: str
    """Exported directory on an NFS head node."""
    client_cidr: str
    """Who may mount: the VPC."""
    subnet_ids: list[pulumi.Input[str]]
    """Subnets the nodes live in: one EFS mount target each, the head node in the first."""
    security_group_id: pulumi.Input[str]
    """The members' group, which admits NFS from every node."""
    key_name: pulumi.Input[str]
    """EC2 key pair of the head node."""
    tags: dict
    """Tags shared by the storage resources."""


class SharedStorage(pulumi.ComponentResource):
    """The file system every node mounts at storage.mount; stateful parts are protected."""

    def __init__(
        self, name: str, args: SharedStorageArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("ringfleet:aws:SharedStorage", name, None, opts)
        self.file_system: aws.efs.FileSystem | None = None
        self.head: aws.ec2.Instance | None = None
        self.server: pulumi.Input[str | None] = args.server
        if args.kind == "efs":
            self.file_system = aws.efs.FileSystem(
                f"{name}-efs",
                encrypted=True,
                performance_mode="generalPurpose",
                throughput_mode="elastic",
                tags={**args.tags, "Name": name},
                opts=stateful_opts(self),
            )
            self.mount_targets = [
                aws.efs.MountTarget(
                    f"{name}-mt-{i}",
                    file_system_id=self.file_system.id,
                    subnet_id=subnet_id,
                    security_groups=[args.security_group_id],
                    opts=pulumi.ResourceOptions(parent=self),
                )
                for i, subnet_id in enumerate(args.subnet_ids)
            ]
            self.server = self.file_system.dns_name
        elif args.kind == "nfs" and args.server is None:
            self.head = aws.ec2.Instance(
                f"{name}-nfs",
                ami=ami_lookup(parent=self),
                instance_type=NFS_HEAD_INSTANCE_TYPE,
                subnet_id=args.subnet_ids[0],
                vpc_security_group_ids=[args.security_group_id],
                key_name=args.key_name,
                associate_public_ip_address=True,
                user_data=nfs_head_user_data(args.export, args.client_cidr),
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                    volume_size=NFS_HEAD_VOLUME_GB,
                    volume_type=ROOT_VOLUME_TYPE,
                    encrypted=True,
                    # The data lives on the root volume: keep it if the instance goes.
                    delete_on_termination=False,
                    tags={**args.tags, "Name": f"{name}-nfs"},
                ),
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="required"),
                tags={**args.tags, "Name": f"{name}-nfs"},
                opts=stateful_opts(self, ignore_changes=AMI_IGNORE_CHANGES),
            )
            # Nodes mount by address: the head is not an inventory host.
            self.server = self.head.private_ip
        self.register_outputs({"server": self.server})


@dataclass
class NodePoolArgs:
    pool: ResolvedPool
    """The pool: its nodes, instance type, root volume, spot and image."""
    tags: dict
    """Tags of the pool's resources (with the pool tag)."""
    subnet_id: pulumi.Input[str]
    """Subnet of every node (one AZ, as the placement group needs)."""
    security_group_id: pulumi.Input[str]
    """The members' security group."""
    key_name: pulumi.Input[str]
    """EC2 key pair of the nodes."""
    user_data: pulumi.Input[str]
    """cloud-config of every node (login user, SSH port)."""


class NodePool(pulumi.ComponentResource):
    """A cluster placement group and one instance per node of a pool."""

    def __init__(self, name: str, args: NodePoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ringfleet:aws:NodePool", name, None, opts)
        pool = args.pool
        child = pulumi.ResourceOptions(parent=self)
        node_opts = pulumi.ResourceOptions(parent=self, ignore_changes=AMI_IGNORE_CHANGES)
        # Cluster strategy: the pool's instances share low-latency networking for allreduce.
        self.placement_group = aws.ec2.PlacementGroup(
            f"{name}-pg", strategy="cluster", tags={**args.tags, "Name": name}, opts=child
        )
        ami = pool.pool.image or ami_lookup(parent=self)
        market = None
        if pool.pool.spot:
            market = aws.ec2.InstanceInstanceMarketOptionsArgs(
                market_type="spot",
                spot_options=aws.ec2.InstanceInstanceMarketOptionsSpotOptionsArgs(
                    spot_instance_type="one-time",
                    instance_interruption_behavior="terminate",
                ),
            )
        self.instances = {
            node.name: aws.ec2.Instance(
                node.name,
                ami=ami,
                instance_type=pool.pool.instance_type,
                subnet_id=args.subnet_id,
                vpc_security_group_ids=[args.security_group_id],
                key_name=args.key_name,
                placement_group=self.placement_group.name,
                associate_public_ip_address=True,
                user_data=args.user_data,
                instance_market_options=market,
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                    volume_size=pool.pool.root_volume_gb,
                    volume_type=ROOT_VOLUME_TYPE,
                    encrypted=True,
                    delete_on_termination=True,
                    tags={**args.tags, "Name": node.name},
                ),
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="required"),
                tags={**args.tags, "Name": node.name},
                opts=node_opts,
            )
            for node in pool.nodes
        }
        # The instance id lets `ringfleet trust` read the node's console output.
        self.addresses = {
            node: {"privateIp": i.private_ip, "publicIp": i.public_ip, "instanceId": i.id}
            for node, i in self.instances.items()
        }
        self.register_outputs({"nodes": list(self.instances)})


def build_aws(spec: ClusterSpec) -> Made:
    """Provider, network, key, storage and one NodePool per pool."""
    c = spec.cluster
    provider = aws.Provider(f"{c.name}-aws", region=c.region)
    # Children inherit the provider from their component.
    top = pulumi.ResourceOptions(providers=[provider])
    tags = cluster_tags(spec)
    network = ClusterNetwork(
        f"{c.name}-net",
        ClusterNetworkArgs(
            cidr=c.network.subnet,
            admin_cidr=c.network.admin_cidr,
            ssh_port=c.ssh.port,
            tags=tags,
        ),
        top,
    )
    key = SshKey(f"{c.name}-ssh", SshKeyArgs(tags=tags), top)
    storage = SharedStorage(
        f"{c.name}-storage",
        SharedStorageArgs(
            kind=c.storage.kind,
            server=c.storage.server,
            export=c.storage.export,
            client_cidr=c.network.subnet,
            subnet_ids=network.subnet_ids,
            security_group_id=network.security_group.id,
            key_name=key.key_pair.key_name,
            tags=tags,
        ),
        top,
    )
    user_data = key.public_key_openssh.apply(lambda pub: node_user_data(pub, c.ssh.port))
    made = Made(storage_server=storage.server, private_key=key.private_key_openssh)
    for name, pool in spec.pools.items():
        node_pool = NodePool(
            f"{c.name}-{name}",
            NodePoolArgs(
                pool=pool,
                tags=cluster_tags(spec, pool=name),
                subnet_id=network.subnet_ids[0],
                security_group_id=network.security_group.id,
                key_name=key.key_pair.key_name,
                user_data=user_data,
            ),
            top,
        )
        made.addresses.update(node_pool.addresses)
    return made
