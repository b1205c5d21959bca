#!/usr/bin/env bash
# Prepare a running RabbitMQ for MCollective nodes (rabbitmq connector, STOMP):
# enable the STOMP plugin (listener on 61613), add the vhost and a user with full
# permissions on it. Idempotent and quiet; never stops or restarts the broker.
# Run as root (rabbitmqctl needs the broker's Erlang cookie).
#
#   MCO_VHOST=/mcollective MCO_USER=mcollective MCO_PASSWORD=marionette \
#     contrib/mcollective/setup-rabbitmq.sh
#
# The connector also needs the topic exchanges <collective>_broadcast and
# <collective>_directed in the vhost, which STOMP cannot create: declare them over AMQP
# (durable, type topic) before starting nodes, as the test harness does
# (tests/mco_broker.py ensure_exchanges).
set -euo pipefail

vhost=${MCO_VHOST:-/mcollective}
user=${MCO_USER:-mcollective}
password=${MCO_PASSWORD:-marionette}
stomp_port=${MCO_STOMP_PORT:-61613}

if ! rabbitmq-plugins list --enabled --minimal 2>/dev/null | grep -x rabbitmq_stomp >/dev/null; then
  rabbitmq-plugins --quiet enable rabbitmq_stomp >/dev/null
fi

if ! rabbitmqctl list_vhosts --silent | grep -xF -- "$vhost" >/dev/null; then
  rabbitmqctl add_vhost --quiet "$vhost" >/dev/null
fi
if ! rabbitmqctl list_users --silent | cut -f1 | grep -xF -- "$user" >/dev/null; then
  rabbitmqctl add_user --quiet "$user" "$password" >/dev/null
elif ! rabbitmqctl authenticate_user --quiet "$user" "$password" >/dev/null 2>&1; then
  rabbitmqctl change_password --quiet "$user" "$password" >/dev/null
fi
rabbitmqctl set_permissions --quiet -p "$vhost" "$user" '.*' '.*' '.*' >/dev/null

for _ in $(seq 1 60); do
  (exec 3<>"/dev/tcp/127.0.0.1/$stomp_port") 2>/dev/null && exit 0
  sleep 1
done
echo "RabbitMQ STOMP did not listen on port $stomp_port within 60 s" >&2
exit 1
