from django.contrib import admin

admin.site.site_header = "LLM Manager"
admin.site.site_title = "LLM Manager"
admin.site.index_title = "Operators' console"
