require "open3"
require "mcollective/util/test_state"

module MCollective
  module Agent
    # The interface and semantics of the mcollective-package-agent (install, uninstall,
    # update, purge, status) for mcoflow's tests. plugin.package.mode chooses the backend:
    # apt (really runs apt-get/dpkg-query) or simulated (a JSON state file per node,
    # plugin.package.state_file; plugin.package.delay seconds per change).
    class Package < RPC::Agent
      # A package manager command that failed; its message goes into the reply.
      class Failed < StandardError; end

      STATUS_KEYS = %i[name ensure version release epoch arch provider].freeze

      action("install") { change(:install) }
      action("update") { change(:update) }
      action("uninstall") { change(:uninstall) }
      action("purge") { change(:purge) }
      action("status") { fill(backend.status(request[:package])) }

      private

      # Like the real agent: refuse what would change nothing, always report the status.
      # It raises a plain error there, which MCollective answers with statuscode 5.
      def change(act)
        name = request[:package]
        before = backend.status(name)
        absent = before[:ensure] == "absent"
        if act == :install && !absent && request[:version].nil?
          fill(before)
          raise "Package is already installed"
        elsif act != :install && absent
          fill(before)
          raise "Package is not present on the system"
        end
        output = backend.change(act, name, request[:version])
        fill(backend.status(name))
        reply[:output] = output
      rescue Failed => e
        fill(backend.status(name))
        reply.fail!(e.message)
      end

      def fill(status)
        STATUS_KEYS.each { |key| reply[key] = status[key].to_s }
      end

      def backend
        @backend ||= case (mode = @config.pluginconf.fetch("package.mode", "simulated"))
                     when "apt" then AptPackages.new
                     when "simulated" then SimulatedPackages.new(@config.pluginconf)
                     else raise "plugin.package.mode must be apt or simulated, not #{mode}"
                     end
      end

      # Splits a Debian version "[epoch:]upstream[-release]" into the agent's fields.
      def self.version_fields(full)
        epoch, rest = full.include?(":") ? full.split(":", 2) : ["0", full]
        upstream, _, release = rest.rpartition("-")
        upstream.empty? ? {epoch: epoch, version: rest, release: ""} : {epoch: epoch, version: upstream, release: release}
      end

      # Debian's package tools, as argv arrays (never through a shell).
      class AptPackages
        APT_GET = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120"].freeze
        APT_ENV = {"DEBIAN_FRONTEND" => "noninteractive", "LC_ALL" => "C"}.freeze

        def status(name)
          out, _, rc = Open3.capture3(APT_ENV, "dpkg-query", "-W", "-f", "${Status}|${Version}|${Architecture}", name)
          state, version, arch = out.split("|", 3)
          unless rc.success? && state.to_s.end_with?(" installed")
            return {name: name, ensure: "absent", provider: "apt"}
          end

          {name: name, ensure: version, arch: arch, provider: "apt"}.merge(Package.version_fields(version))
        end

        def change(act, name, version)
          target = version ? "#{name}=#{version}" : name
          args = case act
                 when :install then ["install", "--no-install-recommends", target]
                 when :update then ["install", "--only-upgrade", "--no-install-recommends", name]
                 when :uninstall then ["remove", name]
                 when :purge then ["purge", name]
                 end
          out, err, rc = Open3.capture3(APT_ENV, *APT_GET, *args)
          raise Failed, "apt-get #{args.first} #{target} failed (exit #{rc.exitstatus}): #{err.strip[-500..] || err.strip}" unless rc.success?

          out
        end
      end

      # Packages that exist only in the node's state file.
      class SimulatedPackages
        def initialize(pluginconf)
          @state = Util::TestState.new(pluginconf["package.state_file"])
          @delay = Float(pluginconf.fetch("package.delay", "0"))
        end

        def status(name)
          version = @state.read["packages"][name]
          return {name: name, ensure: "absent", provider: "simulated"} unless version

          {name: name, ensure: version, arch: "amd64", provider: "simulated"}.merge(Package.version_fields(version))
        end

        def change(act, name, version)
          index = @state.begin_action("package", act.to_s, name)
          sleep(@delay) if @delay.positive?
          output = @state.update do |state|
            broken = %i[install update].include?(act) && state["broken_packages"].include?(name)
            @state.finish_action(state, index, broken ? "failed" : "done")
            apply(state, act, name, version) unless broken
          end
          raise Failed, "E: simulated failure installing #{name}" if output.nil?

          output
        end

        private

        def apply(state, act, name, version)
          if %i[uninstall purge].include?(act)
            state["packages"].delete(name)
            return "Removing #{name} (simulated)"
          end
          current = state["packages"][name]
          state["packages"][name] = if act == :update
                                      state["available"].fetch(name, current)
                                    else
                                      version || state["available"].fetch(name, "1.0-1")
                                    end
          "Setting up #{name} (#{state['packages'][name]}) (simulated)"
        end
      end
    end
  end
end
