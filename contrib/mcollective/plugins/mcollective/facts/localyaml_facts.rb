require "yaml"

module MCollective
  module Facts
    # Facts from YAML files: factsource = localyaml, plugin.localyaml = FILE[:FILE...]
    # (later files win). It replaces the packaged yaml fact source, which calls
    # YAML.safe_load with positional arguments that Psych 4 (Ruby 3.1) no longer takes,
    # so every lookup there comes back empty.
    class Localyaml_facts < Base
      def load_facts_from_source
        files = Config.instance.pluginconf.fetch("localyaml", "").split(File::PATH_SEPARATOR)
        files.each_with_object({}) do |path, facts|
          data = YAML.safe_load(File.read(path), permitted_classes: [Symbol], aliases: true)
          facts.merge!(data) if data.is_a?(Hash)
        rescue StandardError, Psych::Exception => e
          Log.error("localyaml facts: cannot load #{path}: #{e.class}: #{e}")
        end
      end

      # The files are small and tests rewrite them: read them on every lookup.
      def force_reload?
        true
      end
    end
  end
end
