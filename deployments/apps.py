from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        from deployments.services import refuse_removing_models_in_use
        from downloads.signals import model_files_removing

        model_files_removing.connect(refuse_removing_models_in_use, dispatch_uid="deployments-model-in-use")
