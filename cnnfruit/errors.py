"""The exceptions the library raises for problems a user can fix."""


class CnnfruitError(ValueError):
    """Bad input, a bad file or a failed run; the CLI shows its message as `Error: ...`."""


class SettingError(CnnfruitError):
    """A problem with a setting's value, in words that name the setting.

    The message is a template: `{lr}` stands for the setting `lr` and named values fill the other
    fields, e.g. SettingError("{lr} must be a positive number, got {value}", value=-1). str() gives
    the library's wording (`lr must be ...`); render(name_setting) lets a client name settings its
    own way, as the CLI does with its flags (`--lr must be ...`).
    """

    def __init__(self, template, **values):
        self.template = template
        self.values = values
        super().__init__(self.render())

    def render(self, name_setting=str):
        return self.template.format_map(_Fields(self.values, name_setting))

    def __reduce__(self):  # so the error survives pickling (a sweep's worker processes send them back)
        return (_rebuild_setting_error, (type(self), self.template, self.values))


def _rebuild_setting_error(cls, template, values):
    error = cls.__new__(cls)
    SettingError.__init__(error, template, **values)
    return error


class _Fields(dict):
    """Template fields: the named values, and every other name taken as a setting's."""

    def __init__(self, values, name_setting):
        super().__init__(values)
        self.name_setting = name_setting

    def __missing__(self, name):
        return self.name_setting(name)
