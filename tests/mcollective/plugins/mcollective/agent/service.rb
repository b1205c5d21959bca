require "open3"
require "mcollective/util/test_state"

module MCollective
  module Agent
    # The interface and semantics of the mcollective-service-agent (start, stop, restart,
    # status) for mcoflow's tests. plugin.service.mode chooses the backend: sysv (runs
    # /usr/sbin/service) or simulated (the node's JSON state file,
    # plugin.service.state_file, which also counts starts, stops and restarts).
    class Service < RPC::Agent
      # A service command that failed; its message goes into the reply.
      class Failed < StandardError; end

      action("start") { change(:start) }
      action("stop") { change(:stop) }
      action("restart") { change(:restart) }

      action "status" do
        reply[:status] = backend.status(request[:service])
      rescue Failed => e
        reply.fail!("Could not determine status of service '#{request[:service]}': #{e.message}")
      end

      private

      # Like the real agent: starting a running or stopping a stopped service fails.
      def change(act)
        name = request[:service]
        before = backend.status(name)
        if (act == :start && before == "running") || (act == :stop && before == "stopped")
          reply[:status] = before
          reply.fail!("Could not #{act} service '#{name}': Service is already #{before}")
        end
        restarts = backend.change(act, name)
        reply[:restarts] = restarts if restarts
        reply[:status] = backend.status(name)
      rescue Failed => e
        reply[:status] = backend.status(name)
        reply.fail!("Could not #{act} service '#{name}': #{e.message}")
      end

      def backend
        @backend ||= case (mode = @config.pluginconf.fetch("service.mode", "simulated"))
                     when "sysv" then SysvServices.new
                     when "simulated" then SimulatedServices.new(@config.pluginconf)
                     else raise "plugin.service.mode must be sysv or simulated, not #{mode}"
                     end
      end

      # SysV init scripts through service(8); status is its exit code.
      class SysvServices
        SERVICE = "/usr/sbin/service".freeze

        def status(name)
          _, _, rc = Open3.capture3(SERVICE, name, "status")
          rc.success? ? "running" : "stopped"
        end

        def change(act, name)
          out, err, rc = Open3.capture3(SERVICE, name, act.to_s)
          raise Failed, "#{SERVICE} #{name} #{act} exited #{rc.exitstatus}: #{(out + err).strip[-500..] || (out + err).strip}" unless rc.success?

          nil
        end
      end

      # Services that exist only in the node's state file; any name is a stopped service
      # until started, those listed in broken_services fail to start.
      class SimulatedServices
        def initialize(pluginconf)
          @state = Util::TestState.new(pluginconf["service.state_file"])
          @delay = Float(pluginconf.fetch("service.delay", "0"))
        end

        def status(name)
          @state.read["services"].fetch(name, {}).fetch("status", "stopped")
        end

        # Returns the service's restart count.
        def change(act, name)
          index = @state.begin_action("service", act.to_s, name)
          sleep(@delay) if @delay.positive?
          restarts = @state.update do |state|
            service = state["services"][name] ||= {"status" => "stopped", "starts" => 0, "stops" => 0, "restarts" => 0}
            broken = act != :stop && state["broken_services"].include?(name)
            @state.finish_action(state, index, broken ? "failed" : "done")
            next nil if broken

            service["#{act}s"] += 1
            service["status"] = act == :stop ? "stopped" : "running"
            service["restarts"]
          end
          raise Failed, "simulated failure of #{name}" if restarts.nil?

          restarts
        end
      end
    end
  end
end
